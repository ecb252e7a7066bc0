//! `dermcam bench`: runs every stage of the frame path on a recording, one frame after
//! another, and reports per-stage timings, frame rate, allocations per frame (dermcam's own,
//! tract's and the MJPEG decoder's, counted separately) and peak RSS.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::alloc_count::{self, Bucket, Counts};
use crate::capture::{FrameSource, Poll};
use crate::compose::{Composer, Rates};
use crate::convert::{Converter, JpegDecoderChoice};
use crate::frame::RgbFrame;
use crate::pipeline::{Analyzer, Stage, StageProbe};

/// Stage timing statistics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StageStats {
    /// Median in microseconds.
    pub median_us: f64,
    /// 99th percentile in microseconds.
    pub p99_us: f64,
    /// Mean in microseconds.
    pub mean_us: f64,
}

/// Allocations per frame after warm-up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AllocationsPerFrame {
    /// dermcam's own code (must be 0).
    pub dermcam: f64,
    /// tract's model run.
    pub tract: f64,
    /// The MJPEG decoder (0 for other formats).
    pub decoder: f64,
    /// Which decoder.
    pub decoder_name: String,
    /// Whether a counting allocator was installed (false: all counts are 0 and meaningless).
    pub counted: bool,
}

/// `dermcam bench --json` output (a stable interface: see the README).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Frames measured (after warm-up).
    pub frames: u64,
    /// Frames per second through all stages, one after another on one core.
    pub fps: f64,
    /// Per-stage statistics by stage name.
    pub stages: BTreeMap<String, StageStats>,
    /// Allocations per frame.
    pub allocations_per_frame: AllocationsPerFrame,
    /// Peak resident set size in MiB.
    pub peak_rss_mb: f64,
    /// Model name.
    pub model: String,
    /// Model precision.
    pub precision: String,
    /// Source description.
    pub source: String,
    /// Grad-CAM median time over inference median time.
    pub gradcam_over_inference: f64,
    /// CPU.
    pub cpu: String,
    /// Warm-up frames not measured.
    pub warmup: u64,
    /// Size of the composed screen, `[width, height]`.
    pub output: [u32; 2],
    /// Frames that failed to convert (corrupt JPEG, short YUYV), skipped and not measured.
    pub corrupt_frames: u64,
}

/// What [`bench`] runs.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Frames measured.
    pub frames: u64,
    /// Frames run first and not measured.
    pub warmup: u64,
    /// The JPEG decoder for MJPEG sources.
    pub jpeg: JpegDecoderChoice,
    /// Size the screen is composed at (`dermcam run` composes at its display's size); `None`:
    /// the source's size.
    pub output: Option<(u32, u32)>,
}

/// Parses a `WxH` size such as `320x240` (both at least 16 and at most 8192 pixels).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT such as 320x240, got {s:?}");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(format!(
            "{s:?}: width and height must be between 16 and 8192 pixels"
        ));
    }
    Ok((w, h))
}

/// Records stage durations into buffers allocated up front.
#[derive(Debug)]
struct TimingProbe {
    started: [Option<Instant>; 6],
    samples: [Vec<u32>; 6],
    record: bool,
}

fn stage_index(s: Stage) -> usize {
    Stage::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

impl TimingProbe {
    fn new(capacity: usize) -> Self {
        TimingProbe {
            started: [None; 6],
            samples: std::array::from_fn(|_| Vec::with_capacity(capacity)),
            record: false,
        }
    }
}

impl StageProbe for TimingProbe {
    fn begin(&mut self, stage: Stage) {
        self.started[stage_index(stage)] = Some(Instant::now());
    }
    fn end(&mut self, stage: Stage) {
        let i = stage_index(stage);
        if let (true, Some(t0)) = (self.record, self.started[i].take()) {
            let ns = t0.elapsed().as_nanos().min(u32::MAX as u128) as u32;
            if self.samples[i].len() < self.samples[i].capacity() {
                self.samples[i].push(ns);
            }
        }
    }
}

fn stats(samples: &mut [u32]) -> StageStats {
    if samples.is_empty() {
        return StageStats {
            median_us: 0.0,
            p99_us: 0.0,
            mean_us: 0.0,
        };
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    StageStats {
        median_us: at(0.5),
        p99_us: at(0.99),
        mean_us: samples.iter().map(|v| *v as f64).sum::<f64>() / samples.len() as f64 / 1e3,
    }
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The source failed.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    /// Conversion setup failed.
    #[error(transparent)]
    Convert(#[from] crate::convert::ConvertError),
    /// Analysis failed.
    #[error(transparent)]
    Analyze(#[from] crate::pipeline::AnalyzeError),
    /// Composition failed.
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    /// The source ended before any frame.
    #[error("the source {0} gave no frames")]
    NoFrames(String),
}

/// Runs the benchmark: `warmup` frames unmeasured, then `frames` measured. The source should
/// loop if it has fewer frames.
pub fn bench(
    source: &mut dyn FrameSource,
    analyzer: &mut Analyzer,
    composer: &Composer,
    options: BenchOptions,
) -> Result<BenchReport, BenchError> {
    let BenchOptions {
        frames,
        warmup,
        jpeg,
        output,
    } = options;
    let format = source.format();
    let mut converter = Converter::with_jpeg(format, jpeg)?;
    let mut rgb = RgbFrame::new(format.width, format.height);
    let (ow, oh) = output.unwrap_or((format.width, format.height));
    let mut out = RgbFrame::new(ow, oh);
    let mut analysis = analyzer.new_analysis();
    let mut probe = TimingProbe::new(frames as usize);
    let mut corrupt = 0u64;
    let mut done = 0u64;
    let mut measured_start: Option<(Instant, Counts)> = None;
    let total = frames + warmup;
    while done < total {
        if done == warmup && measured_start.is_none() {
            probe.record = true;
            measured_start = Some((Instant::now(), alloc_count::snapshot()));
        }
        let mut converted = false;
        let mut convert_failed = false;
        let mut consume = |raw: crate::capture::RawFrame<'_>| {
            if raw.error_flag {
                // The driver flagged it: skipped and counted, as `dermcam run` does.
                convert_failed = true;
                return;
            }
            probe.begin(Stage::Convert);
            let r = converter.convert(&raw, &mut rgb);
            probe.end(Stage::Convert);
            converted = r.is_ok();
            convert_failed = r.is_err();
        };
        match source.poll_frame(Instant::now(), &mut consume)? {
            Poll::Frame => {}
            Poll::Wait(until) => {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                continue;
            }
            Poll::End => break,
        }
        if convert_failed {
            corrupt += 1;
            continue;
        }
        if !converted {
            continue;
        }
        analyzer.analyze(&rgb, &mut analysis, &mut probe)?;
        probe.begin(Stage::Compose);
        composer.compose(&rgb, Some(&analysis), Rates::default(), &mut out)?;
        probe.end(Stage::Compose);
        done += 1;
    }
    let Some((t0, c0)) = measured_start else {
        return Err(BenchError::NoFrames(source.describe().to_string()));
    };
    let elapsed = t0.elapsed();
    let counts = alloc_count::snapshot().since(&c0);
    let measured = done.saturating_sub(warmup).max(1);
    let mut stages = BTreeMap::new();
    for (i, s) in Stage::ALL.iter().enumerate() {
        stages.insert(s.name().to_string(), stats(&mut probe.samples[i]));
    }
    let inference = stages.get("inference").map_or(0.0, |s| s.median_us);
    let gradcam = stages.get("gradcam").map_or(0.0, |s| s.median_us);
    let per = |b: Bucket| counts.get(b) as f64 / measured as f64;
    let manifest = analyzer.model().manifest();
    Ok(BenchReport {
        frames: measured,
        fps: measured as f64 / elapsed.as_secs_f64().max(1e-9),
        stages,
        allocations_per_frame: AllocationsPerFrame {
            dermcam: per(Bucket::Dermcam),
            tract: per(Bucket::Tract),
            decoder: per(Bucket::Decoder),
            decoder_name: converter.jpeg_decoder_name().unwrap_or("none").to_string(),
            counted: alloc_count::is_installed(),
        },
        peak_rss_mb: super::peak_rss_mb().unwrap_or(0.0),
        model: manifest.name.clone(),
        precision: manifest
            .precision
            .clone()
            .unwrap_or_else(|| "unknown".into()),
        source: source.describe().to_string(),
        gradcam_over_inference: if inference > 0.0 {
            gradcam / inference
        } else {
            0.0
        },
        cpu: super::cpu_model(),
        warmup,
        output: [ow, oh],
        corrupt_frames: corrupt,
    })
}

/// The report as a table for people.
pub fn format_table(r: &BenchReport) -> String {
    let mut s = String::new();
    use std::fmt::Write;
    let _ = writeln!(s, "model   {} ({})", r.model, r.precision);
    let _ = writeln!(s, "source  {}", r.source);
    let _ = writeln!(s, "cpu     {}", r.cpu);
    let _ = writeln!(
        s,
        "frames  {} (after {} warm-up){}",
        r.frames,
        r.warmup,
        match r.corrupt_frames {
            0 => String::new(),
            n => format!(", {n} corrupt skipped"),
        }
    );
    let _ = writeln!(s, "screen  {}x{}", r.output[0], r.output[1]);
    let _ = writeln!(s, "\n| stage      | median µs | p99 µs   | mean µs  |");
    let _ = writeln!(s, "|------------|----------:|---------:|---------:|");
    for st in crate::pipeline::Stage::ALL {
        if let Some(v) = r.stages.get(st.name()) {
            let _ = writeln!(
                s,
                "| {:<10} | {:>9.1} | {:>8.1} | {:>8.1} |",
                st.name(),
                v.median_us,
                v.p99_us,
                v.mean_us
            );
        }
    }
    let a = &r.allocations_per_frame;
    let _ = writeln!(s, "\nfps (all stages, one core)  {:.1}", r.fps);
    let _ = writeln!(
        s,
        "Grad-CAM / inference        {:.4}%",
        r.gradcam_over_inference * 100.0
    );
    let _ = writeln!(
        s,
        "allocations per frame       dermcam {:.2}, tract {:.1}, decoder {:.1} ({}){}",
        a.dermcam,
        a.tract,
        a.decoder,
        a.decoder_name,
        if a.counted {
            ""
        } else {
            " [no counting allocator]"
        }
    );
    let _ = writeln!(s, "peak RSS                    {:.1} MiB", r.peak_rss_mb);
    s
}
