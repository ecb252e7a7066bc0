//! `dermcam run`: the daemon loop built from a board file and a config file.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::capture::recording::{Recording, ReplayOptions};
use crate::capture::stills::Stills;
use crate::capture::v4l2::{V4l2Error, V4l2Source};
use crate::capture::{CaptureError, FrameSource};
use crate::compose::Composer;
use crate::config::ControlsSection;
use crate::config::{Config, DisplayKind, SourceKind};
use crate::controls::{
    open_input, open_output, run_controls, spawn_stdin, ButtonInput, ButtonRole, ControlBus,
    ControlsError, PinControls, PinLabel, StatusLed,
};
use crate::display::png::PngSink;
use crate::display::{DisplayError, FrameSink, NullSink};
use crate::heatmap::ColorMapKind;
use crate::model::{Model, ModelError};
use crate::pipeline::run::{
    run_pipeline_with, Counters, RecordSetup, RunError, RunOptions, RunSummary, Services,
};
use crate::pipeline::{AnalyzeError, Analyzer};
use crate::record::RecordStore;
use crate::service::Notifier;

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
    /// A button or the LED could not be opened.
    #[error(transparent)]
    Controls(#[from] ControlsError),
}

/// The board's GPIO controls, as configured (`None` when no line is configured).
pub type BoardControls = PinControls<crate::controls::ButtonPin, linux_embedded_hal::CdevPin>;

/// Opens the configured button(s) and LED on the GPIO character device.
pub fn open_controls(c: &ControlsSection) -> Result<Option<BoardControls>, ControlsError> {
    if !c.uses_gpio() {
        return Ok(None);
    }
    let timing = c.timing();
    let label = |chip: &Path, line: u32, role: &'static str| PinLabel {
        chip: chip.to_path_buf(),
        line,
        role,
    };
    let mut controls = PinControls {
        button: None,
        save: None,
        led: None,
    };
    if let Some(line) = c.button_line {
        let pin = open_input(&c.button_chip, line, c.active_low, "button")?;
        controls.button = Some(ButtonInput::new(
            pin,
            label(&c.button_chip, line, "button"),
            ButtonRole::FreezeAndSave,
            timing,
        ));
    }
    if let Some(line) = c.save_line {
        let pin = open_input(&c.save_chip, line, c.active_low, "save button")?;
        controls.save = Some(ButtonInput::new(
            pin,
            label(&c.save_chip, line, "save button"),
            ButtonRole::Save,
            timing,
        ));
    }
    if let Some(line) = c.led_line {
        let pin = open_output(&c.led_chip, line, "led")?;
        controls.led = Some(StatusLed::new(pin, label(&c.led_chip, line, "led")));
    }
    Ok(Some(controls))
}

/// The device id written into records: `[records] device_id`, else the host name.
pub fn device_id(config: &Config) -> String {
    if let Some(id) = &config.records.device_id {
        return id.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
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
        SourceKind::Stills => Box::new(Stills::open_with(
            &path,
            Duration::from_millis(if config.source.realtime { 500 } else { 0 }),
            config.source.looped,
            config.source.jpeg_decoder,
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

/// Opens the configured sink. PNG and null sinks take `[display] width`/`height` as their
/// output size (default: the camera frame's); fbdev and DRM displays have the device's.
pub fn open_sink(config: &Config) -> Result<Box<dyn FrameSink>, DisplayError> {
    let d = &config.display;
    let sized = |sink: Box<dyn FrameSink>| -> Box<dyn FrameSink> {
        match (d.width, d.height) {
            (Some(w), Some(h)) => Box::new(crate::display::sized::SizedSink::new(sink, w, h)),
            _ => sink,
        }
    };
    Ok(match config.display.kind {
        DisplayKind::Png => sized(Box::new(PngSink::new(
            &config.display.dir,
            config.display.every,
        )?)),
        DisplayKind::Null => sized(Box::<NullSink>::default()),
        DisplayKind::Fbdev => Box::new(crate::display::fbdev::FbdevSink::open(
            &d.device_path(),
            &d.tty,
        )?),
        DisplayKind::Drm => Box::new(crate::display::drm::DrmSink::open(
            &d.device_path(),
            &d.tty,
        )?),
        DisplayKind::Spi => match &config.display.spi {
            Some(spi) => Box::new(crate::display::spi::open(spi)?),
            None => {
                return Err(crate::display::spi::PanelError::Config {
                    key: "display.spi",
                    problem: "is missing; kind = \"spi\" needs a [display.spi] section".into(),
                }
                .into())
            }
        },
    })
}

/// Builds the analyzer for a source's frame size.
pub fn build_analyzer(config: &Config, width: u32, height: u32) -> Result<Analyzer, AppRunError> {
    let model = Model::load(&super::resolve_data_path(&config.model.manifest))?;
    let mut analyzer = Analyzer::new(
        model,
        width,
        height,
        config.preprocess.crop_fraction,
        config.colormap().unwrap_or(ColorMapKind::Jet),
        config.model.target_class.as_deref(),
    )?;
    // A folder of stills is separate images, not a video of one lesion: never averaged.
    if config.source.kind != SourceKind::Stills {
        analyzer.set_smoothing(config.model.smoothing());
    }
    Ok(analyzer)
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
    // Without a usable records directory dermcam still shows its results; a save then
    // shows "NOT SAVED" and the log says why.
    let mut store = match RecordStore::open(&config.records.dir, config.records.limits()) {
        Ok(store) => {
            log::info!("screening records: {}", store.dir().display());
            Some(store)
        }
        Err(e) => {
            log::error!("{e}; saving screening records is off");
            None
        }
    };
    let controls = open_controls(&config.controls)?;
    let bus = std::sync::Arc::new(ControlBus::new());
    if config.controls.stdin {
        match spawn_stdin(std::sync::Arc::clone(&bus)) {
            Ok(()) => log::info!(
                "controls: commands on standard input: f (freeze/unfreeze), s (save), q (quit)"
            ),
            Err(e) => log::warn!("controls: cannot read standard input: {e}"),
        }
    }
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("{e}; not notifying systemd");
        Notifier::disabled()
    });
    if let Some(every) = notifier.watchdog_interval() {
        log::info!("systemd watchdog: pinging every {every:?} while the pipeline makes progress");
    }
    let board = if config.board.name.is_empty() {
        "unnamed".to_string()
    } else {
        config.board.name.clone()
    };
    let device = device_id(config);
    let mut sink = open_sink(config)?;
    log::info!("display: {}", sink.describe());
    let options = RunOptions {
        frame_slots: config.pipeline.frame_slots,
        max_frames,
        jpeg_decoder: config.source.jpeg_decoder,
        ..RunOptions::default()
    };
    // SIGINT/SIGTERM stop the loop cleanly, so displays give the console back.
    crate::display::console::install_stop_signals();
    let finished = AtomicBool::new(false);
    let manifest = analyzer.model().manifest().clone();
    let result = std::thread::scope(|s| {
        s.spawn(|| crate::display::console::forward_stop_signal(stop, &finished));
        if let Some(controls) = controls {
            let (bus, finished) = (&*bus, &finished);
            s.spawn(move || run_controls(controls, bus, finished, Duration::from_millis(5)));
        }
        let services = Services {
            controls: Some(&bus),
            records: store.as_mut().map(|store| RecordSetup {
                store,
                manifest: &manifest,
                board: &board,
                device_id: &device,
            }),
            notifier: Some(&notifier),
            ..Services::default()
        };
        let r = run_pipeline_with(
            source.as_mut(),
            &mut analyzer,
            &composer,
            sink.as_mut(),
            options,
            counters,
            stop,
            services,
        );
        finished.store(true, std::sync::atomic::Ordering::Release);
        r
    });
    // The display (and its console guard) and the camera (stream off) are released here,
    // on every path, before the caller prints its final line.
    drop(sink);
    drop(source);
    Ok(result?)
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
