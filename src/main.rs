//! The `dermcam` binary: subcommands over the library, with context added to errors here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dermcam::alloc_count::CountingAlloc;
use dermcam::app;
use dermcam::capture::recording::{Recording, ReplayOptions};
use dermcam::compose::Composer;
use dermcam::heatmap::ColorMapKind;
use dermcam::model::Model;
use dermcam::pipeline::Analyzer;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// dermcam — Grad-CAM screening overlay for handheld dermatoscopes.
///
/// A screening aid for trained users, not a diagnosis.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify still images (JPEG/PNG) and write their overlays.
    Infer {
        /// Images to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Model manifest (default: the configured default model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write overlay images into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Explain this class (label id) instead of the top class.
        #[arg(long)]
        class: Option<String>,
        /// Print one JSON object per image per line.
        #[arg(long)]
        json: bool,
        /// Centre square side relative to the image's short side.
        #[arg(long, default_value_t = 1.0)]
        crop_fraction: f32,
        /// Colour map: jet or inferno.
        #[arg(long, default_value = "jet")]
        colormap: String,
        /// Heatmap opacity (0..=1).
        #[arg(long, default_value_t = 0.45)]
        opacity: f32,
        /// JPEG decoder: auto (libjpeg-turbo if installed), libjpeg-turbo or zune-jpeg.
        #[arg(long, default_value = "auto")]
        jpeg_decoder: dermcam::convert::JpegDecoderChoice,
    },
    /// Run the daemon loop: source → model → Grad-CAM → display.
    Run {
        /// Config file (overrides the board file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Board name (boards/NAME.toml) or path; default: desktop.
        #[arg(long)]
        board: Option<String>,
        /// Stop after this many source frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Extra controls: `stdin` reads f (freeze/unfreeze), s (save), q (quit) from
        /// standard input (as `[controls] stdin = true`).
        #[arg(long, value_name = "KIND", value_parser = ["stdin"])]
        controls: Option<String>,
    },
    /// Benchmark every stage on a recording.
    Bench {
        /// Recording to replay (default: the bundled MJPEG recording).
        #[arg(long)]
        source: Option<PathBuf>,
        /// Measured frames.
        #[arg(long, default_value_t = 300)]
        frames: u64,
        /// Unmeasured warm-up frames.
        #[arg(long, default_value_t = 20)]
        warmup: u64,
        /// Model manifest.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// JPEG decoder: auto (libjpeg-turbo if installed), libjpeg-turbo or zune-jpeg.
        #[arg(long, default_value = "auto")]
        jpeg_decoder: dermcam::convert::JpegDecoderChoice,
        /// Compose the screen at this size, as `dermcam run` does for its display (e.g.
        /// 320x240 for an SPI panel, 800x480 for a DSI screen); default: the camera's size.
        #[arg(long, value_name = "WxH", value_parser = app::bench::parse_size)]
        output: Option<(u32, u32)>,
    },
    /// List the V4L2 cameras with their formats, sizes and frame rates.
    Devices,
    /// Record raw camera frames into a recording (.dcrec) that replays anywhere.
    Record {
        /// Camera: /dev/videoN, videoN, or a /dev/v4l/by-id or by-path name (default: the
        /// board's `source.device`, else /dev/video0).
        #[arg(long)]
        device: Option<String>,
        /// Board whose `[source]` gives formats, size and rate (default: desktop).
        #[arg(long)]
        board: Option<String>,
        /// Stop after this many frames.
        #[arg(long, conflicts_with = "seconds")]
        frames: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// The recording to write (appears only when complete).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check that a model and its manifest can be used, and say exactly why not.
    CheckModel {
        /// Model manifest.
        manifest: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn default_manifest() -> PathBuf {
    app::resolve_data_path(std::path::Path::new(dermcam::config::DEFAULT_MANIFEST))
}

fn infer(
    images: Vec<PathBuf>,
    model: Option<PathBuf>,
    options: app::infer::InferOptions,
    json: bool,
) -> Result<bool> {
    let manifest = model.unwrap_or_else(default_manifest);
    let model =
        Model::load(&manifest).with_context(|| format!("loading model {}", manifest.display()))?;
    let mut inferrer = app::infer::Inferrer::new(model, options).context("preparing inference")?;
    let mut ok = true;
    let stdout = std::io::stdout();
    for image in images {
        let result = inferrer.infer(&image);
        let mut out = stdout.lock();
        match result {
            Ok(r) if json => {
                serde_json::to_writer(&mut out, &r)?;
                writeln!(out)?;
            }
            Ok(r) => {
                writeln!(
                    out,
                    "{}: {} ({}) {:.1}%{}",
                    r.path,
                    r.top_name,
                    r.top_class,
                    r.top_probability * 100.0,
                    r.overlay.map(|o| format!(" -> {o}")).unwrap_or_default()
                )?;
            }
            Err(e) => {
                ok = false;
                log::error!("{e}");
                if json {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({"path": image.display().to_string(), "error": e.to_string()}),
                    )?;
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(ok)
}

fn bench(
    source: Option<PathBuf>,
    frames: u64,
    warmup: u64,
    model: Option<PathBuf>,
    json: bool,
    jpeg_decoder: dermcam::convert::JpegDecoderChoice,
    output: Option<(u32, u32)>,
) -> Result<()> {
    let source_path = source.unwrap_or_else(|| {
        app::resolve_data_path(std::path::Path::new("recordings/lesion-mjpeg.dcrec"))
    });
    let mut recording = Recording::open(
        &source_path,
        ReplayOptions {
            realtime: false,
            looped: true,
        },
    )
    .with_context(|| format!("opening recording {}", source_path.display()))?;
    let manifest = model.unwrap_or_else(default_manifest);
    let model =
        Model::load(&manifest).with_context(|| format!("loading model {}", manifest.display()))?;
    let labels = model.manifest().labels.clone();
    let format = recording.header().format;
    let mut analyzer = Analyzer::new(
        model,
        format.width,
        format.height,
        1.0,
        ColorMapKind::Jet,
        None,
    )?;
    let composer = Composer::new(labels, 0.45, 0.5);
    let report = app::bench::bench(
        &mut recording,
        &mut analyzer,
        &composer,
        app::bench::BenchOptions {
            frames,
            warmup,
            jpeg: jpeg_decoder,
            output,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", app::bench::format_table(&report));
    }
    Ok(())
}

fn record(
    device: Option<String>,
    board: Option<String>,
    frames: Option<u64>,
    seconds: Option<f64>,
    out: PathBuf,
) -> Result<()> {
    use dermcam::capture::v4l2::{CaptureStatus, V4l2Source};
    use dermcam::capture::FrameSource;
    let cfg = app::run::load_config(Some(board.as_deref().unwrap_or("desktop")), None)
        .context("loading configuration")?;
    let mut v4l2 = cfg
        .source
        .v4l2_config()
        .map_err(|(key, problem)| anyhow::anyhow!("{key} {problem}"))?;
    if let Some(d) = device {
        v4l2.device = d;
    } else if cfg.source.kind != dermcam::config::SourceKind::V4l2 {
        v4l2.device = "/dev/video0".into();
    }
    let limit = match (frames, seconds) {
        (Some(n), _) => app::record::Limit::Frames(n),
        (None, Some(s)) if s > 0.0 && s.is_finite() => {
            app::record::Limit::Duration(std::time::Duration::from_secs_f64(s))
        }
        (None, Some(s)) => anyhow::bail!("--seconds {s}: must be positive"),
        (None, None) => anyhow::bail!("say how much to record: --frames N or --seconds S"),
    };
    let device_name = v4l2.device.clone();
    let mut source = V4l2Source::open(v4l2, std::time::Instant::now())
        .with_context(|| format!("opening camera {device_name}"))?;
    if source.status() == CaptureStatus::NoCamera {
        anyhow::bail!(
            "camera {device_name} not found (`dermcam devices` lists the cameras on this machine)"
        );
    }
    log::info!("recording from {}", source.describe());
    let interval = source.inner().interval();
    let stop = AtomicBool::new(false);
    let summary = app::record::record(
        &mut source,
        &out,
        limit,
        (interval.den, interval.num),
        &stop,
    )
    .with_context(|| format!("recording to {}", out.display()))?;
    let stats = source.stats();
    println!(
        "wrote {}: {} frames {} {}x{} over {:.2} s ({} flagged by the driver, {} short frames skipped; camera: {} dropped, {} timeouts, {} reconnects)",
        summary.path.display(),
        summary.frames,
        summary.format.pixel,
        summary.format.width,
        summary.format.height,
        summary.duration.as_secs_f64(),
        summary.flagged,
        summary.skipped_short,
        stats.dropped,
        stats.timeouts,
        stats.reconnects
    );
    Ok(())
}

/// The error with its causes, leaving out a cause whose text its parent already quoted.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result: Result<bool> = match cli.command {
        Command::Infer {
            images,
            model,
            out,
            class,
            json,
            crop_fraction,
            colormap,
            opacity,
            jpeg_decoder,
        } => colormap
            .parse::<ColorMapKind>()
            .map_err(|e| anyhow::anyhow!("--colormap: {e}"))
            .and_then(|colormap| {
                infer(
                    images,
                    model,
                    app::infer::InferOptions {
                        out_dir: out,
                        class,
                        crop_fraction,
                        colormap,
                        opacity,
                        low_confidence: 0.5,
                        jpeg_decoder,
                    },
                    json,
                )
            }),
        Command::Run {
            config,
            board,
            frames,
            controls,
        } => (|| {
            let mut cfg = app::run::load_config(board.as_deref(), config.as_deref())
                .context("loading configuration")?;
            if controls.as_deref() == Some("stdin") {
                cfg.controls.stdin = true;
            }
            let stop = AtomicBool::new(false);
            let counters = dermcam::pipeline::run::Counters::default();
            let summary = app::run::run(&cfg, frames, &stop, &counters).context("dermcam run")?;
            let c = summary.counters;
            log::info!(
                "done: {} frames composed ({:.1} fps), {} analysed ({:.1}/s), {} skipped, {} dropped, {} corrupt, {} analysis errors, {} records saved, {} not saved{}",
                c.composed,
                summary.display_fps(),
                c.analysed,
                summary.inference_fps(),
                c.skipped,
                c.dropped,
                c.corrupt,
                c.analysis_errors,
                c.saved,
                c.save_failed,
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    " (stopped by a signal)"
                } else {
                    ""
                }
            );
            if cfg.display.kind == dermcam::config::DisplayKind::Png {
                log::info!("overlays written to {}", cfg.display.dir.display());
            }
            Ok(true)
        })(),
        Command::Bench {
            source,
            frames,
            warmup,
            model,
            json,
            jpeg_decoder,
            output,
        } => bench(source, frames, warmup, model, json, jpeg_decoder, output).map(|()| true),
        Command::Devices => {
            let devices = app::devices::list();
            print!("{}", app::devices::format_report(&devices));
            Ok(true)
        }
        Command::Record {
            device,
            board,
            frames,
            seconds,
            out,
        } => record(device, board, frames, seconds, out).map(|()| true),
        Command::CheckModel { manifest, json } => match app::check::check_model(&manifest) {
            Ok(report) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                } else {
                    println!("OK: {} can be used by dermcam", manifest.display());
                    println!("  model        {} ({})", report.name, report.model_file);
                    println!("  sha256       {} (verified)", report.sha256);
                    println!("  input        {:?} {}", report.input_shape, report.layout);
                    println!(
                        "  target layer {} {:?}",
                        report.target_layer, report.target_shape
                    );
                    println!(
                        "  logits       {} ({} labels: {})",
                        report.logits,
                        report.labels.len(),
                        report.labels.join(", ")
                    );
                    println!("  head         {}", report.head_ops.join(" -> "));
                    println!(
                        "  quantised    {}",
                        if report.quantised_ops.is_empty() {
                            "no (float model)".into()
                        } else {
                            report.quantised_ops.join(", ")
                        }
                    );
                    println!("  loaded and verified in {:.0} ms", report.load_ms);
                }
                Ok(true)
            }
            Err(e) => {
                eprintln!("NOT SUPPORTED: {}: {e}", manifest.display());
                Ok(false)
            }
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
