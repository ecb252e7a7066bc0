//! The threaded frame loop.
//!
//! - **capture** polls the source at its own rate and converts each frame into a free slot
//!   of the frame pool (no free slot: the frame is dropped and counted; a corrupt frame is
//!   skipped and counted);
//! - **inference** analyses the newest frame whenever it is free (frames it never saw are
//!   counted as skipped) into the analysis pool;
//! - **compose** blends the newest frame with the newest analysis, draws the overlay and
//!   hands the result to the sink.
//!
//! Buffers are allocated before the threads start; nothing in the loops allocates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::analyze::{Analysis, Analyzer};
use super::pool::SlotPool;
use super::NoProbe;
use crate::alloc_count::{self, Bucket};
use crate::capture::{CaptureError, FrameSource, Poll};
use crate::compose::{ComposeError, Composer, Rates};
use crate::convert::{ConvertError, Converter};
use crate::display::{DisplayError, FrameSink};
use crate::frame::RgbFrame;

/// Errors that stop the loop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source failed for good.
    #[error("frame source failed: {0}")]
    Capture(#[from] CaptureError),
    /// The source's format cannot be converted.
    #[error("cannot convert the source's frames: {0}")]
    Convert(#[from] ConvertError),
    /// Composition failed (a bug: sizes are fixed at start).
    #[error("cannot compose: {0}")]
    Compose(#[from] ComposeError),
    /// The display failed.
    #[error("display failed: {0}")]
    Display(#[from] DisplayError),
    /// A pipeline thread panicked.
    #[error("pipeline thread {0} panicked")]
    Panicked(&'static str),
    /// The analyzer was built for another frame size.
    #[error("the model pipeline was sized for {expected_w}x{expected_h} frames but the source gives {got_w}x{got_h}")]
    FrameSize {
        /// Analyzer width.
        expected_w: u32,
        /// Analyzer height.
        expected_h: u32,
        /// Source width.
        got_w: u32,
        /// Source height.
        got_h: u32,
    },
}

/// Loop settings.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Frame buffers in the pool (capture + newest + inference + compose + spare).
    pub frame_slots: usize,
    /// Stop after this many frames from the source.
    pub max_frames: Option<u64>,
    /// How often the status line is logged.
    pub status_every: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            frame_slots: 5,
            max_frames: None,
            status_every: Duration::from_secs(2),
        }
    }
}

/// Counters of a run, readable while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames received from the source.
    pub captured: AtomicU64,
    /// Frames dropped because every buffer was busy.
    pub dropped: AtomicU64,
    /// Frames skipped because they could not be decoded or were flagged by the driver.
    pub corrupt: AtomicU64,
    /// Frames analysed by the model.
    pub analysed: AtomicU64,
    /// Frames the model never saw because a newer one had arrived.
    pub skipped: AtomicU64,
    /// Analyses that failed.
    pub analysis_errors: AtomicU64,
    /// Frames composed and shown.
    pub composed: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    /// See [`Counters::captured`].
    pub captured: u64,
    /// See [`Counters::dropped`].
    pub dropped: u64,
    /// See [`Counters::corrupt`].
    pub corrupt: u64,
    /// See [`Counters::analysed`].
    pub analysed: u64,
    /// See [`Counters::skipped`].
    pub skipped: u64,
    /// See [`Counters::analysis_errors`].
    pub analysis_errors: u64,
    /// See [`Counters::composed`].
    pub composed: u64,
}

impl Counters {
    /// Reads all counters.
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            captured: l(&self.captured),
            dropped: l(&self.dropped),
            corrupt: l(&self.corrupt),
            analysed: l(&self.analysed),
            skipped: l(&self.skipped),
            analysis_errors: l(&self.analysis_errors),
            composed: l(&self.composed),
        }
    }
}

fn bump(a: &AtomicU64) -> u64 {
    a.fetch_add(1, Ordering::Relaxed) + 1
}

/// What a finished run reports.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    /// Final counters.
    pub counters: CounterSnapshot,
    /// Wall time of the loop.
    pub elapsed: Duration,
}

impl RunSummary {
    /// Composed frames per second.
    pub fn display_fps(&self) -> f64 {
        self.counters.composed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Model runs per second.
    pub fn inference_fps(&self) -> f64 {
        self.counters.analysed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Exponential moving average of a rate.
#[derive(Debug, Clone, Copy, Default)]
struct RateMeter {
    last: Option<Instant>,
    fps: f32,
}

impl RateMeter {
    fn tick(&mut self, now: Instant) -> f32 {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f32();
            if dt > 0.0 {
                let inst = 1.0 / dt;
                self.fps = if self.fps == 0.0 {
                    inst
                } else {
                    0.9 * self.fps + 0.1 * inst
                };
            }
        }
        self.last = Some(now);
        self.fps
    }
}

/// Runs the loop until the source ends, `max_frames` are captured, or `stop` is set.
pub fn run_pipeline(
    source: &mut dyn FrameSource,
    analyzer: &mut Analyzer,
    composer: &Composer,
    sink: &mut dyn FrameSink,
    options: RunOptions,
    counters: &Counters,
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    let format = source.format();
    let (aw, ah) = analyzer.frame_size();
    if (aw, ah) != (format.width, format.height) {
        return Err(RunError::FrameSize {
            expected_w: aw,
            expected_h: ah,
            got_w: format.width,
            got_h: format.height,
        });
    }
    let mut converter = Converter::new(format)?;
    let frames = SlotPool::new(options.frame_slots, || {
        RgbFrame::new(format.width, format.height)
    });
    let analyses = SlotPool::new(3, || analyzer.new_analysis());
    let mut output = RgbFrame::new(format.width, format.height);
    let inference_rate = AtomicU64::new(0f32.to_bits() as u64);
    let done = AtomicBool::new(false);
    let started = Instant::now();

    let result = std::thread::scope(|s| {
        let capture = std::thread::Builder::new()
            .name("dermcam-capture".into())
            .spawn_scoped(s, || {
                let r = capture_loop(source, &mut converter, &frames, options, counters, stop);
                frames.close();
                r
            });
        let inference = std::thread::Builder::new()
            .name("dermcam-inference".into())
            .spawn_scoped(s, || {
                inference_loop(analyzer, &frames, &analyses, counters, &inference_rate);
                analyses.close();
            });
        let compose = std::thread::Builder::new()
            .name("dermcam-compose".into())
            .spawn_scoped(s, || {
                let r = compose_loop(
                    composer,
                    &frames,
                    &analyses,
                    &mut output,
                    sink,
                    counters,
                    &inference_rate,
                );
                done.store(true, Ordering::Release);
                if r.is_err() {
                    // Nothing will show frames any more: stop capturing.
                    frames.close();
                }
                r
            });
        let (capture, inference, compose) = match (capture, inference, compose) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                frames.close();
                return Err(RunError::Panicked("spawn"));
            }
        };
        // Status from this thread, off the frame path.
        let mut last_status = Instant::now();
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            if last_status.elapsed() >= options.status_every {
                last_status = Instant::now();
                alloc_count::scope(Bucket::Output, || {
                    let c = counters.snapshot();
                    log::info!(
                        "status: captured {} composed {} analysed {} skipped {} dropped {} corrupt {}",
                        c.captured, c.composed, c.analysed, c.skipped, c.dropped, c.corrupt
                    );
                });
            }
            if stop.load(Ordering::Relaxed) {
                frames.close();
            }
        }
        let capture_result = capture.join().map_err(|_| RunError::Panicked("capture"))?;
        inference
            .join()
            .map_err(|_| RunError::Panicked("inference"))?;
        let compose_result = compose.join().map_err(|_| RunError::Panicked("compose"))?;
        capture_result?;
        compose_result?;
        Ok(())
    });
    result?;
    alloc_count::scope(Bucket::Output, || sink.finish())?;
    Ok(RunSummary {
        counters: counters.snapshot(),
        elapsed: started.elapsed(),
    })
}

fn capture_loop(
    source: &mut dyn FrameSource,
    converter: &mut Converter,
    frames: &SlotPool<RgbFrame>,
    options: RunOptions,
    counters: &Counters,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let mut index = 0u64;
    let mut convert_error: Option<ConvertError> = None;
    loop {
        if stop.load(Ordering::Relaxed) || frames.is_closed() {
            return Ok(());
        }
        if options.max_frames.is_some_and(|m| index >= m) {
            return Ok(());
        }
        let now = Instant::now();
        let mut consume = |raw: crate::capture::RawFrame<'_>| {
            let captured = bump(&counters.captured);
            if raw.error_flag {
                bump(&counters.corrupt);
                return;
            }
            let Some(mut slot) = frames.try_acquire_free() else {
                bump(&counters.dropped);
                return;
            };
            match converter.convert(&raw, &mut slot) {
                Ok(()) => {
                    index += 1;
                    slot.publish(index);
                }
                Err(e) => {
                    let n = bump(&counters.corrupt);
                    if n == 1 || n % 100 == 0 {
                        convert_error = Some(e);
                    }
                    let _ = captured;
                }
            }
        };
        let poll = source.poll_frame(now, &mut consume)?;
        if let Some(e) = convert_error.take() {
            alloc_count::scope(Bucket::Output, || {
                log::warn!(
                    "skipped a corrupt frame ({} so far): {e}",
                    counters.corrupt.load(Ordering::Relaxed)
                )
            });
        }
        match poll {
            Poll::Frame => {}
            Poll::Wait(until) => crate::capture::sleep_toward(until, Duration::from_millis(50)),
            Poll::End => return Ok(()),
        }
    }
}

fn inference_loop(
    analyzer: &mut Analyzer,
    frames: &SlotPool<RgbFrame>,
    analyses: &SlotPool<Analysis>,
    counters: &Counters,
    rate: &AtomicU64,
) {
    let mut last: Option<u64> = None;
    let mut meter = RateMeter::default();
    loop {
        let Some(frame) = frames.wait_newer(last, Duration::from_millis(100)) else {
            if frames.is_closed() && frames.newest_sequence() <= last {
                return;
            }
            continue;
        };
        let seq = frame.sequence();
        let missed = seq - last.unwrap_or(0) - 1;
        if missed > 0 {
            counters.skipped.fetch_add(missed, Ordering::Relaxed);
        }
        last = Some(seq);
        let Some(mut slot) = analyses.try_acquire_free() else {
            continue;
        };
        match analyzer.analyze(&frame, &mut slot, &mut NoProbe) {
            Ok(()) => {
                drop(frame);
                slot.publish(seq);
                bump(&counters.analysed);
                let fps = meter.tick(Instant::now());
                rate.store(fps.to_bits() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                drop(frame);
                drop(slot);
                let n = bump(&counters.analysis_errors);
                if n == 1 || n % 100 == 0 {
                    alloc_count::scope(Bucket::Output, || {
                        log::error!("analysis failed ({n} so far): {e}")
                    });
                }
            }
        }
    }
}

fn compose_loop(
    composer: &Composer,
    frames: &SlotPool<RgbFrame>,
    analyses: &SlotPool<Analysis>,
    output: &mut RgbFrame,
    sink: &mut dyn FrameSink,
    counters: &Counters,
    inference_rate: &AtomicU64,
) -> Result<(), RunError> {
    let mut last: Option<u64> = None;
    let mut shown: Option<u64> = None;
    let mut meter = RateMeter::default();
    let mut index = 0u64;
    loop {
        let Some(frame) = frames.wait_newer(last, Duration::from_millis(100)) else {
            if frames.is_closed() && frames.newest_sequence() <= last {
                // The source ended: let inference finish the last frame, then show the
                // final analysis once more so a finite source never loses it.
                while !analyses.is_closed() {
                    drop(analyses.wait_newer(shown, Duration::from_millis(100)));
                }
                if analyses.newest_sequence() > shown {
                    if let (Some(frame), Some(analysis)) = (frames.newest(), analyses.newest()) {
                        let rates = Rates {
                            display_fps: meter.fps,
                            inference_fps: f32::from_bits(
                                inference_rate.load(Ordering::Relaxed) as u32
                            ),
                        };
                        composer.compose(&frame, Some(&analysis), rates, output)?;
                        drop(frame);
                        sink.show(output, Some(&analysis), index)?;
                        bump(&counters.composed);
                    }
                }
                return Ok(());
            }
            continue;
        };
        last = Some(frame.sequence());
        let analysis = analyses.newest();
        shown = analysis.as_ref().map(|a| a.sequence());
        let rates = Rates {
            display_fps: meter.tick(Instant::now()),
            inference_fps: f32::from_bits(inference_rate.load(Ordering::Relaxed) as u32),
        };
        composer.compose(&frame, analysis.as_deref(), rates, output)?;
        drop(frame);
        sink.show(output, analysis.as_deref(), index)?;
        drop(analysis);
        index += 1;
        bump(&counters.composed);
    }
}
