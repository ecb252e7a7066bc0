//! `dermcam run`: the daemon loop built from a board file and a config file.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::capture::recording::{Recording, ReplayOptions};
use crate::capture::stills::Stills;
use crate::capture::v4l2::{V4l2Error, V4l2Source};
use crate::capture::{CaptureError, FrameSource};
use crate::compose::Composer;
use crate::config::{Config, DisplayKind, SourceKind};
use crate::display::png::PngSink;
use crate::display::{DisplayError, FrameSink, NullSink};
use crate::heatmap::ColorMapKind;
use crate::model::{Model, ModelError};
use crate::pipeline::run::{run_pipeline, Counters, RunError, RunOptions, RunSummary};
use crate::pipeline::{AnalyzeError, Analyzer};

/// Errors setting up or running the loop.
#[derive(Debug, thiserror::Error)]
pub enum AppRunError {
    /// The source could not be opened.
    #[error(transparent)]
    Source(#[from] CaptureError),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The analyzer could not be built.
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    /// The display could not be set up.
    #[error(transparent)]
    Display(#[from] DisplayError),
    /// The loop failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Opens the configured frame source.
pub fn open_source(config: &Config) -> Result<Box<dyn FrameSource>, CaptureError> {
    let path = super::resolve_data_path(&config.source.path);
    Ok(match config.source.kind {
        SourceKind::Recording => Box::new(Recording::open(
            &path,
            ReplayOptions {
                realtime: config.source.realtime,
                looped: config.source.looped,
            },
        )?),
        SourceKind::Stills => Box::new(Stills::open(
            &path,
            Duration::from_millis(if config.source.realtime { 500 } else { 0 }),
            config.source.looped,
        )?),
        SourceKind::V4l2 => {
            let v4l2 = config
                .source
                .v4l2_config()
                .map_err(|(key, problem)| V4l2Error::Config(format!("{key} {problem}")))?;
            Box::new(V4l2Source::open(v4l2, std::time::Instant::now())?)
        }
    })
}

/// Opens the configured sink.
pub fn open_sink(config: &Config) -> Result<Box<dyn FrameSink>, DisplayError> {
    Ok(match config.display.kind {
        DisplayKind::Png => Box::new(PngSink::new(&config.display.dir, config.display.every)?),
        DisplayKind::Null => Box::new(NullSink::default()),
    })
}

/// Builds the analyzer for a source's frame size.
pub fn build_analyzer(config: &Config, width: u32, height: u32) -> Result<Analyzer, AppRunError> {
    let model = Model::load(&super::resolve_data_path(&config.model.manifest))?;
    Ok(Analyzer::new(
        model,
        width,
        height,
        config.preprocess.crop_fraction,
        config.colormap().unwrap_or(ColorMapKind::Jet),
        config.model.target_class.as_deref(),
    )?)
}

/// Runs the loop as configured. `max_frames` overrides nothing in the config: it stops the
/// loop after that many source frames.
pub fn run(
    config: &Config,
    max_frames: Option<u64>,
    stop: &AtomicBool,
    counters: &Counters,
) -> Result<RunSummary, AppRunError> {
    let mut source = open_source(config)?;
    let format = source.format();
    log::info!("source: {}", source.describe());
    let mut analyzer = build_analyzer(config, format.width, format.height)?;
    let manifest = analyzer.model().manifest();
    log::info!(
        "model: {} ({}), loaded in {:.0} ms",
        manifest.name,
        manifest.precision.as_deref().unwrap_or("?"),
        analyzer.model().load_time().as_secs_f64() * 1e3
    );
    let composer = Composer::new(
        manifest.labels.clone(),
        config.heatmap.opacity,
        config.overlay.low_confidence,
    );
    let mut sink = open_sink(config)?;
    log::info!("display: {}", sink.describe());
    let options = RunOptions {
        frame_slots: config.pipeline.frame_slots,
        max_frames,
        ..RunOptions::default()
    };
    Ok(run_pipeline(
        source.as_mut(),
        &mut analyzer,
        &composer,
        sink.as_mut(),
        options,
        counters,
        stop,
    )?)
}

/// Loads the configuration from `--board` and `--config` (default board: `desktop`).
pub fn load_config(
    board: Option<&str>,
    config: Option<&Path>,
) -> Result<Config, crate::config::ConfigError> {
    let board_path = match (board, config) {
        (Some(name), _) => Some(crate::config::find_board(name)?),
        (None, Some(_)) => None,
        (None, None) => Some(crate::config::find_board("desktop")?),
    };
    Config::load(board_path.as_deref(), config)
}
