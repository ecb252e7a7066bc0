//! The threaded frame loop.
//!
//! - **capture** polls the source at its own rate and converts each frame into a free slot
//!   of the frame pool (no free slot: the frame is dropped and counted; a corrupt frame is
//!   skipped and counted);
//! - **inference** analyses the newest frame whenever it is free (frames it never saw are
//!   counted as skipped) into the analysis pool;
//! - **compose** blends the newest frame with the newest analysis, draws the overlay and
//!   hands the result to the sink; it also owns the screen state: the controls' freeze and
//!   save requests ([`ControlBus`]), `NoCamera` while the source waits for its camera,
//!   `ModelError` while analyses keep failing, and `Saved` / `DiskFull` / `SaveFailed` for a
//!   few seconds after a save;
//! - **records** (when configured) writes screening records through the [`RecordStore`],
//!   off the frame path.
//!
//! **Freeze** copies the next analysed frame and its analysis into a snapshot buffer (the
//! inference thread does it, so the frame and the analysis are of the same camera frame),
//! then the screen shows that snapshot in the `Frozen` state, without rates, redrawn when
//! the state changes and every [`STILL_SCREEN_REFRESH`]. Capture keeps running (the camera
//! keeps streaming, its health stays visible and the watchdog sees progress); the model
//! rests, since nothing would show its results (less heat and battery on a handheld).
//! **Save** sends the frozen snapshot (or, when live, the next analysed frame's) to the
//! record thread, which copies it into its own buffers and composes the record's overlay at
//! camera resolution.
//!
//! Buffers are allocated before the threads start; nothing in the loops allocates (the
//! record thread does, off the frame path, charged to the output bucket).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::analyze::{Analysis, Analyzer};
use super::pool::SlotPool;
use super::NoProbe;
use crate::alloc_count::{self, Bucket};
use crate::capture::v4l2::CaptureStatus;
use crate::capture::{CaptureError, FrameSource, Poll};
use crate::compose::{ComposeError, Composer, Rates, ScreenState};
use crate::controls::{ControlBus, LedMode};
use crate::convert::{ConvertError, Converter};
use crate::display::{DisplayError, FrameSink};
use crate::frame::RgbFrame;
use crate::model::Manifest;
use crate::record::{RecordError, RecordInput, RecordStore};
use crate::service::{Liveness, Notifier, Watchdog};

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
    /// JPEG decoder for MJPEG sources.
    pub jpeg_decoder: crate::convert::JpegDecoderChoice,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            frame_slots: 5,
            max_frames: None,
            status_every: Duration::from_secs(2),
            jpeg_decoder: crate::convert::JpegDecoderChoice::Auto,
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
    /// Screening records saved.
    pub saved: AtomicU64,
    /// Screening records that could not be saved.
    pub save_failed: AtomicU64,
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
    /// See [`Counters::saved`].
    pub saved: u64,
    /// See [`Counters::save_failed`].
    pub save_failed: u64,
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
            saved: l(&self.saved),
            save_failed: l(&self.save_failed),
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

/// Saving screening records from the pipeline.
pub struct RecordSetup<'a> {
    /// The records directory (opened at start-up).
    pub store: &'a mut RecordStore,
    /// The model's manifest (written into every record).
    pub manifest: &'a Manifest,
    /// Board name.
    pub board: &'a str,
    /// Device id.
    pub device_id: &'a str,
}

/// What the loop does beyond showing frames: controls, records, systemd.
pub struct Services<'a> {
    /// Freeze/save requests in, screen state and LED mode out (none: no controls).
    pub controls: Option<&'a ControlBus>,
    /// Where saved records go (none: a save shows `SaveFailed`).
    pub records: Option<RecordSetup<'a>>,
    /// systemd notifications (none: no notifications).
    pub notifier: Option<&'a Notifier>,
    /// How long `Saved`, `DiskFull` and `SaveFailed` stay on screen.
    pub result_for: Duration,
    /// Consecutive failed analyses after which the screen shows `ModelError`.
    pub model_error_after: u64,
    /// A save that waits longer than this for an analysed frame fails.
    pub save_timeout: Duration,
}

impl Default for Services<'_> {
    fn default() -> Self {
        Services {
            controls: None,
            records: None,
            notifier: None,
            result_for: Duration::from_secs(3),
            model_error_after: 3,
            save_timeout: Duration::from_secs(5),
        }
    }
}

/// The frozen (or to-be-saved) frame and its analysis, of the same camera frame.
struct Snapshot {
    frame: RgbFrame,
    analysis: Analysis,
    /// Request id it answers (0: none yet).
    id: u64,
}

/// A job for the record thread.
#[derive(Debug, Default)]
struct WriterState {
    /// Snapshot id to save.
    job: Option<u64>,
    /// No more jobs will come: finish the one in hand and stop.
    quit: bool,
}

/// Outcomes of a save, reported to the compose thread.
const OUTCOME_SAVED: u8 = 1;
const OUTCOME_DISK_FULL: u8 = 2;
const OUTCOME_FAILED: u8 = 3;

/// State shared by the pipeline threads.
struct Shared {
    /// The source waits for its camera (absent or reconnecting).
    camera_waiting: AtomicBool,
    /// Loop iterations of capture, inference, compose (the watchdog's heartbeats).
    heartbeats: [AtomicU64; 3],
    /// Analyses failed in a row.
    failures_in_row: AtomicU64,
    /// The model rests (frozen).
    paused: AtomicBool,
    /// Newest snapshot request id, and the id the snapshot holds.
    snapshot_wanted: AtomicU64,
    snapshot_filled: AtomicU64,
    snapshot: Mutex<Snapshot>,
    writer: Mutex<WriterState>,
    writer_wake: Condvar,
    /// Saves finished so far and the outcome of the last one.
    outcomes: AtomicU64,
    outcome: AtomicU8,
    /// Displayed frames per second (f32 bits).
    display_rate: AtomicU64,
}

impl Shared {
    /// Shared state with a snapshot made of `frame` and `analysis` (sized buffers).
    fn new(frame: RgbFrame, analysis: Analysis) -> Self {
        Shared {
            camera_waiting: AtomicBool::new(false),
            heartbeats: Default::default(),
            failures_in_row: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            snapshot_wanted: AtomicU64::new(0),
            snapshot_filled: AtomicU64::new(0),
            snapshot: Mutex::new(Snapshot {
                frame,
                analysis,
                id: 0,
            }),
            writer: Mutex::new(WriterState::default()),
            writer_wake: Condvar::new(),
            outcomes: AtomicU64::new(0),
            outcome: AtomicU8::new(0),
            display_rate: AtomicU64::new(0f32.to_bits() as u64),
        }
    }
}

const CAPTURE: usize = 0;
const INFERENCE: usize = 1;
const COMPOSE: usize = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data are plain buffers and flags that stay consistent if a holder
    // panicked (the panic itself is reported by the join).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs off the frame path (charged to the output bucket).
fn note(f: impl FnOnce()) {
    alloc_count::scope(Bucket::Output, f)
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
    run_pipeline_with(
        source,
        analyzer,
        composer,
        sink,
        options,
        counters,
        stop,
        Services::default(),
    )
}

/// [`run_pipeline`] with controls, screening records and systemd notifications.
#[allow(clippy::too_many_arguments)]
pub fn run_pipeline_with(
    source: &mut dyn FrameSource,
    analyzer: &mut Analyzer,
    composer: &Composer,
    sink: &mut dyn FrameSink,
    options: RunOptions,
    counters: &Counters,
    stop: &AtomicBool,
    services: Services<'_>,
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
    let Services {
        controls,
        records,
        notifier,
        result_for,
        model_error_after,
        save_timeout,
    } = services;
    let own_bus = ControlBus::new();
    let bus = controls.unwrap_or(&own_bus);
    bus.set_led_mode(LedMode::Working);
    let disabled = Notifier::disabled();
    let notifier = notifier.unwrap_or(&disabled);

    let mut converter = Converter::with_jpeg(format, options.jpeg_decoder)?;
    if let Some(name) = converter.jpeg_decoder_name() {
        log::info!("JPEG decoder: {name}");
    }
    let frames = SlotPool::new(options.frame_slots, || {
        RgbFrame::new(format.width, format.height)
    });
    let analyses = SlotPool::new(3, || analyzer.new_analysis());
    let (ow, oh) = sink.output_size().unwrap_or((format.width, format.height));
    composer.prepare(format.width, format.height, ow, oh);
    let mut output = RgbFrame::new(ow, oh);
    let mut blank = RgbFrame::new(format.width, format.height);
    // The record thread's own copies, so a save never holds the snapshot while it encodes.
    let mut record_buffers = records.as_ref().map(|_| {
        (
            RgbFrame::new(format.width, format.height),
            analyzer.new_analysis(),
            RgbFrame::new(format.width, format.height),
        )
    });
    let shared = Shared::new(
        RgbFrame::new(format.width, format.height),
        analyzer.new_analysis(),
    );
    shared.camera_waiting.store(
        source.capture_status() != CaptureStatus::Streaming,
        Ordering::Relaxed,
    );
    let records_enabled = records.is_some();
    let inference_rate = AtomicU64::new(0f32.to_bits() as u64);
    let done = AtomicBool::new(false);
    let started = Instant::now();

    let result = std::thread::scope(|s| {
        let shared = &shared;
        let writer = match (records, record_buffers.as_mut()) {
            (Some(setup), Some((frame, analysis, overlay))) => Some(
                std::thread::Builder::new()
                    .name("dermcam-records".into())
                    .spawn_scoped(s, move || {
                        record_loop(setup, composer, shared, frame, analysis, overlay, counters)
                    }),
            ),
            _ => None,
        };
        let capture = std::thread::Builder::new()
            .name("dermcam-capture".into())
            .spawn_scoped(s, || {
                let r = crate::alloc_count::frame_path(|| {
                    capture_loop(
                        source,
                        &mut converter,
                        &frames,
                        options,
                        counters,
                        stop,
                        shared,
                    )
                });
                frames.close();
                r
            });
        let inference = std::thread::Builder::new()
            .name("dermcam-inference".into())
            .spawn_scoped(s, || {
                crate::alloc_count::frame_path(|| {
                    inference_loop(
                        analyzer,
                        &frames,
                        &analyses,
                        counters,
                        &inference_rate,
                        shared,
                    )
                });
                analyses.close();
            });
        let compose = std::thread::Builder::new()
            .name("dermcam-compose".into())
            .spawn_scoped(s, || {
                let mut ui = Ui::new(bus, shared, records_enabled, result_for, save_timeout);
                ui.model_error_after = model_error_after;
                let r = crate::alloc_count::frame_path(|| {
                    compose_loop(
                        composer,
                        &frames,
                        &analyses,
                        &mut output,
                        &mut blank,
                        sink,
                        counters,
                        &inference_rate,
                        &mut ui,
                    )
                });
                // No more jobs: the record thread finishes the one in hand, then stops.
                lock(&shared.writer).quit = true;
                shared.writer_wake.notify_all();
                done.store(true, Ordering::Release);
                if r.is_err() {
                    // Nothing will show frames any more: stop capturing.
                    frames.close();
                }
                r
            });
        let writer = match writer {
            Some(Ok(w)) => Some(w),
            Some(Err(_)) => {
                frames.close();
                return Err(RunError::Panicked("spawn"));
            }
            None => None,
        };
        let (capture, inference, compose) = match (capture, inference, compose) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                frames.close();
                lock(&shared.writer).quit = true;
                shared.writer_wake.notify_all();
                return Err(RunError::Panicked("spawn"));
            }
        };
        supervise(
            counters,
            shared,
            bus,
            notifier,
            options,
            stop,
            &done,
            &frames,
            &inference_rate,
        );
        let capture_result = capture.join().map_err(|_| RunError::Panicked("capture"))?;
        inference
            .join()
            .map_err(|_| RunError::Panicked("inference"))?;
        let compose_result = compose.join().map_err(|_| RunError::Panicked("compose"))?;
        if let Some(w) = writer {
            w.join().map_err(|_| RunError::Panicked("records"))?;
        }
        capture_result?;
        compose_result?;
        Ok(())
    });
    bus.set_led_mode(LedMode::Off);
    result?;
    alloc_count::scope(Bucket::Output, || sink.finish())?;
    Ok(RunSummary {
        counters: counters.snapshot(),
        elapsed: started.elapsed(),
    })
}

/// One status line (also systemd's `STATUS=`).
pub fn status_line(
    c: &CounterSnapshot,
    display_fps: f32,
    inference_fps: f32,
    state: ScreenState,
    camera_waiting: bool,
) -> String {
    format!(
        "{} - {:.1} fps, model {:.1}/s; captured {} composed {} analysed {} skipped {} dropped {} corrupt {} analysis errors {}; records saved {} failed {}{}",
        state.name(),
        display_fps,
        inference_fps,
        c.captured,
        c.composed,
        c.analysed,
        c.skipped,
        c.dropped,
        c.corrupt,
        c.analysis_errors,
        c.saved,
        c.save_failed,
        if camera_waiting { "; waiting for the camera" } else { "" }
    )
}

/// The status thread (the caller's): status lines, systemd notifications, the watchdog,
/// and the stop request. Off the frame path; returns when the compose thread is done.
#[allow(clippy::too_many_arguments)]
fn supervise(
    counters: &Counters,
    shared: &Shared,
    bus: &ControlBus,
    notifier: &Notifier,
    options: RunOptions,
    stop: &AtomicBool,
    done: &AtomicBool,
    frames: &SlotPool<RgbFrame>,
    inference_rate: &AtomicU64,
) {
    let rate = |a: &AtomicU64| f32::from_bits(a.load(Ordering::Relaxed) as u32);
    let line = || {
        status_line(
            &counters.snapshot(),
            rate(&shared.display_rate),
            rate(inference_rate),
            bus.screen_state(),
            shared.camera_waiting.load(Ordering::Relaxed),
        )
    };
    let mut last_status = Instant::now();
    let mut last_ping = Instant::now();
    let mut watchdog = Watchdog::new();
    let mut ready = false;
    let mut stopping = false;
    let mut stalled_reported = false;
    while !done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        alloc_count::scope(Bucket::Output, || {
            if !ready && counters.composed.load(Ordering::Relaxed) > 0 {
                ready = true;
                let l = line();
                log::info!("ready: {l}");
                if let Err(e) = notifier.ready(&l) {
                    log::warn!("{e}");
                }
            }
            if last_status.elapsed() >= options.status_every {
                last_status = Instant::now();
                let l = line();
                log::info!("status: {l}");
                if let Err(e) = notifier.status(&l) {
                    log::warn!("{e}");
                }
            }
            if let Some(every) = notifier.watchdog_interval() {
                if last_ping.elapsed() >= every {
                    last_ping = Instant::now();
                    let sample = Liveness {
                        heartbeats: [
                            shared.heartbeats[CAPTURE].load(Ordering::Relaxed),
                            shared.heartbeats[INFERENCE].load(Ordering::Relaxed),
                            shared.heartbeats[COMPOSE].load(Ordering::Relaxed),
                        ],
                        composed: counters.composed.load(Ordering::Relaxed),
                        source_waiting: shared.camera_waiting.load(Ordering::Relaxed),
                    };
                    if watchdog.check(sample) {
                        stalled_reported = false;
                        if let Err(e) = notifier.watchdog() {
                            log::warn!("{e}");
                        }
                    } else if !stalled_reported {
                        stalled_reported = true;
                        log::error!(
                            "the pipeline made no progress for {every:?}: not pinging the watchdog ({})",
                            line()
                        );
                    }
                }
            }
            if !stopping && (stop.load(Ordering::Relaxed) || bus.quit_requested()) {
                stopping = true;
                let l = line();
                log::info!("stopping: {l}");
                if let Err(e) = notifier.stopping(&l) {
                    log::warn!("{e}");
                }
            }
        });
        if stopping {
            frames.close();
        }
    }
    if !stopping {
        alloc_count::scope(Bucket::Output, || {
            if let Err(e) = notifier.stopping(&line()) {
                log::warn!("{e}");
            }
        });
    }
}

fn capture_loop(
    source: &mut dyn FrameSource,
    converter: &mut Converter,
    frames: &SlotPool<RgbFrame>,
    options: RunOptions,
    counters: &Counters,
    stop: &AtomicBool,
    shared: &Shared,
) -> Result<(), RunError> {
    let mut index = 0u64;
    let mut convert_error: Option<ConvertError> = None;
    loop {
        bump(&shared.heartbeats[CAPTURE]);
        if stop.load(Ordering::Relaxed) || frames.is_closed() {
            return Ok(());
        }
        if options.max_frames.is_some_and(|m| index >= m) {
            return Ok(());
        }
        let now = Instant::now();
        let mut consume = |raw: crate::capture::RawFrame<'_>| {
            bump(&counters.captured);
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
                }
            }
        };
        let poll = source.poll_frame(now, &mut consume)?;
        shared.camera_waiting.store(
            source.capture_status() != CaptureStatus::Streaming,
            Ordering::Relaxed,
        );
        if let Some(e) = convert_error.take() {
            note(|| {
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
    shared: &Shared,
) {
    let mut last: Option<u64> = None;
    let mut meter = RateMeter::default();
    loop {
        bump(&shared.heartbeats[INFERENCE]);
        let Some(frame) = frames.wait_newer(last, Duration::from_millis(100)) else {
            if frames.is_closed() && frames.newest_sequence() <= last {
                return;
            }
            continue;
        };
        let seq = frame.sequence();
        if shared.paused.load(Ordering::Acquire) {
            // Frozen: the model rests; frames it does not see are not "skipped".
            last = Some(seq);
            meter = RateMeter::default();
            rate.store(0f32.to_bits() as u64, Ordering::Relaxed);
            continue;
        }
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
                let wanted = shared.snapshot_wanted.load(Ordering::Acquire);
                if wanted > shared.snapshot_filled.load(Ordering::Acquire) {
                    let mut snap = lock(&shared.snapshot);
                    if snap.frame.copy_from(&frame) && snap.analysis.copy_from(&slot) {
                        snap.id = wanted;
                        drop(snap);
                        shared.snapshot_filled.store(wanted, Ordering::Release);
                    }
                }
                drop(frame);
                slot.publish(seq);
                shared.failures_in_row.store(0, Ordering::Relaxed);
                bump(&counters.analysed);
                let fps = meter.tick(Instant::now());
                rate.store(fps.to_bits() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                drop(frame);
                drop(slot);
                bump(&shared.failures_in_row);
                let n = bump(&counters.analysis_errors);
                if n == 1 || n % 100 == 0 {
                    note(|| log::error!("analysis failed ({n} so far): {e}"));
                }
            }
        }
    }
}

/// The screen's state machine, run by the compose thread: freeze and save requests,
/// snapshots, save outcomes, and which state to show.
struct Ui<'a> {
    bus: &'a ControlBus,
    shared: &'a Shared,
    records_enabled: bool,
    result_for: Duration,
    save_timeout: Duration,
    model_error_after: u64,
    toggles_seen: u64,
    saves_seen: u64,
    outcomes_seen: u64,
    /// Last snapshot request id.
    next_id: u64,
    /// Showing the snapshot.
    frozen: bool,
    /// Waiting for snapshot `id` to freeze.
    freeze_pending: Option<u64>,
    /// Waiting for snapshot `id` (requested at the instant) to save.
    save_pending: Option<(u64, Instant)>,
    /// A job is with the record thread.
    saving: bool,
    /// `Saved` / `DiskFull` / `SaveFailed` until the instant.
    banner: Option<(ScreenState, Instant)>,
}

impl<'a> Ui<'a> {
    fn new(
        bus: &'a ControlBus,
        shared: &'a Shared,
        records_enabled: bool,
        result_for: Duration,
        save_timeout: Duration,
    ) -> Self {
        Ui {
            toggles_seen: bus.toggles(),
            saves_seen: bus.saves(),
            bus,
            shared,
            records_enabled,
            result_for,
            save_timeout,
            model_error_after: 3,
            outcomes_seen: 0,
            next_id: 0,
            frozen: false,
            freeze_pending: None,
            save_pending: None,
            saving: false,
            banner: None,
        }
    }

    /// Asks the inference thread for a snapshot of its next analysed frame (one request at
    /// a time: a pending one is shared).
    fn request_snapshot(&mut self) -> u64 {
        if let Some(id) = self.freeze_pending.or(self.save_pending.map(|(id, _)| id)) {
            return id;
        }
        self.next_id += 1;
        self.shared
            .snapshot_wanted
            .store(self.next_id, Ordering::Release);
        self.next_id
    }

    fn send_job(&mut self, id: u64) {
        lock(&self.shared.writer).job = Some(id);
        self.shared.writer_wake.notify_all();
        self.saving = true;
    }

    fn fail_now(&mut self, now: Instant) {
        self.banner = Some((ScreenState::SaveFailed, now + self.result_for));
    }

    /// Handles requests and completions; returns the state to show.
    fn update(&mut self, now: Instant, counters: &Counters) -> ScreenState {
        let toggles = self.bus.toggles();
        while self.toggles_seen < toggles {
            self.toggles_seen += 1;
            if self.frozen || self.freeze_pending.is_some() {
                self.frozen = false;
                self.freeze_pending = None;
                self.shared.paused.store(false, Ordering::Release);
                note(|| log::info!("controls: live"));
            } else {
                let id = self.request_snapshot();
                self.freeze_pending = Some(id);
            }
        }
        let filled = self.shared.snapshot_filled.load(Ordering::Acquire);
        if let Some(id) = self.freeze_pending {
            if filled >= id {
                self.freeze_pending = None;
                self.frozen = true;
                self.shared.paused.store(true, Ordering::Release);
                note(|| log::info!("controls: frozen"));
            }
        }
        let saves = self.bus.saves();
        while self.saves_seen < saves {
            self.saves_seen += 1;
            if !self.records_enabled {
                note(|| {
                    log::error!("save: screening records are not available (see the start-up log); nothing was saved")
                });
                bump(&counters.save_failed);
                self.fail_now(now);
            } else if self.saving || self.save_pending.is_some() {
                note(|| log::warn!("save: a save is already under way; ignored"));
            } else if self.frozen {
                note(|| log::info!("controls: save (frozen frame)"));
                self.send_job(filled);
            } else {
                note(|| log::info!("controls: save (next analysed frame)"));
                let id = self.request_snapshot();
                self.save_pending = Some((id, now));
            }
        }
        if let Some((id, since)) = self.save_pending {
            if filled >= id {
                self.save_pending = None;
                self.send_job(filled);
            } else if now.saturating_duration_since(since) >= self.save_timeout {
                self.save_pending = None;
                bump(&counters.save_failed);
                let waited = self.save_timeout;
                note(|| {
                    log::error!("save: no analysed frame within {waited:?}; nothing was saved")
                });
                self.fail_now(now);
            }
        }
        let outcomes = self.shared.outcomes.load(Ordering::Acquire);
        if outcomes > self.outcomes_seen {
            self.outcomes_seen = outcomes;
            self.saving = false;
            let state = match self.shared.outcome.load(Ordering::Acquire) {
                OUTCOME_SAVED => ScreenState::Saved,
                OUTCOME_DISK_FULL => ScreenState::DiskFull,
                _ => ScreenState::SaveFailed,
            };
            self.banner = Some((state, now + self.result_for));
        }
        if self.banner.is_some_and(|(_, until)| now >= until) {
            self.banner = None;
        }
        let camera_waiting = self.shared.camera_waiting.load(Ordering::Relaxed);
        let model_failing =
            self.shared.failures_in_row.load(Ordering::Relaxed) >= self.model_error_after;
        let state = match self.banner {
            Some((state, _)) => state,
            None if self.frozen => ScreenState::Frozen,
            None if camera_waiting => ScreenState::NoCamera,
            None if model_failing => ScreenState::ModelError,
            None => ScreenState::Live,
        };
        self.bus.set_led_mode(match state {
            ScreenState::NoCamera
            | ScreenState::ModelError
            | ScreenState::DiskFull
            | ScreenState::SaveFailed => LedMode::Error,
            _ if self.saving || self.save_pending.is_some() || self.freeze_pending.is_some() => {
                LedMode::Working
            }
            _ => LedMode::Ready,
        });
        state
    }
}

/// How often a screen that does not change is redrawn: the no-camera screen while nothing
/// arrives, and the frozen snapshot while the camera keeps streaming (composing it again
/// for every camera frame would cost a full compose per frame for the same pixels). The
/// redraws keep the display fresh and the watchdog's count of composed frames moving.
pub const STILL_SCREEN_REFRESH: Duration = Duration::from_millis(500);

#[allow(clippy::too_many_arguments)]
fn compose_loop(
    composer: &Composer,
    frames: &SlotPool<RgbFrame>,
    analyses: &SlotPool<Analysis>,
    output: &mut RgbFrame,
    blank: &mut RgbFrame,
    sink: &mut dyn FrameSink,
    counters: &Counters,
    inference_rate: &AtomicU64,
    ui: &mut Ui<'_>,
) -> Result<(), RunError> {
    let shared = ui.shared;
    let bus = ui.bus;
    let mut last: Option<u64> = None;
    let mut shown: Option<u64> = None;
    let mut meter = RateMeter::default();
    let mut index = 0u64;
    let mut last_state: Option<ScreenState> = None;
    let mut last_shown_at: Option<Instant> = None;
    let model_rate = || f32::from_bits(inference_rate.load(Ordering::Relaxed) as u32);
    loop {
        bump(&shared.heartbeats[COMPOSE]);
        let next = frames.wait_newer(last, Duration::from_millis(100));
        if next.is_none() && frames.is_closed() && frames.newest_sequence() <= last {
            if ui.frozen {
                return Ok(());
            }
            // The source ended: let inference finish the last frame, then show the final
            // analysis once more so a finite source never loses it.
            while !analyses.is_closed() {
                drop(analyses.wait_newer(shown, Duration::from_millis(100)));
            }
            if analyses.newest_sequence() > shown {
                if let (Some(frame), Some(analysis)) = (frames.newest(), analyses.newest()) {
                    let rates = Rates {
                        display_fps: meter.fps,
                        inference_fps: model_rate(),
                    };
                    composer.compose(&frame, Some(&analysis), rates, output)?;
                    drop(frame);
                    bus.set_screen_state(ScreenState::Live);
                    sink.show(output, Some(&analysis), index)?;
                    bump(&counters.composed);
                }
            }
            return Ok(());
        }
        let now = Instant::now();
        let state = ui.update(now, counters);
        let changed = last_state != Some(state);
        if let Some(frame) = &next {
            last = Some(frame.sequence());
        }
        if ui.frozen {
            // The snapshot, without rates (nothing is live): at once when the state changes
            // (frozen, saved, disk full), then every STILL_SCREEN_REFRESH.
            drop(next);
            if !changed && last_shown_at.is_some_and(|t| now - t < STILL_SCREEN_REFRESH) {
                continue;
            }
            let fps = meter.tick(now);
            shared
                .display_rate
                .store(fps.to_bits() as u64, Ordering::Relaxed);
            let snap = lock(&shared.snapshot);
            composer.compose_with_state(
                &snap.frame,
                Some(&snap.analysis),
                Rates::default(),
                state,
                output,
            )?;
            bus.set_screen_state(state);
            sink.show(output, Some(&snap.analysis), index)?;
        } else if let Some(frame) = next {
            // A frame captured just before the camera went away (or while the model keeps
            // failing) is shown under that state's banner without a result: the newest
            // analysis would be of an earlier frame, and the state says there is none.
            let analysis = match state {
                ScreenState::NoCamera | ScreenState::ModelError => None,
                _ => analyses.newest(),
            };
            if let Some(a) = &analysis {
                shown = Some(a.sequence());
            }
            let fps = meter.tick(now);
            shared
                .display_rate
                .store(fps.to_bits() as u64, Ordering::Relaxed);
            let rates = Rates {
                display_fps: fps,
                inference_fps: model_rate(),
            };
            composer.compose_with_state(&frame, analysis.as_deref(), rates, state, output)?;
            drop(frame);
            bus.set_screen_state(state);
            sink.show(output, analysis.as_deref(), index)?;
        } else if state != ScreenState::Live
            && (changed || last_shown_at.is_none_or(|t| now - t >= STILL_SCREEN_REFRESH))
        {
            // Nothing arrives (camera absent or reconnecting, or the model failing on a
            // stalled stream): keep the screen saying so.
            let newest = frames.newest();
            let frame = match &newest {
                Some(f) => &**f,
                None => &*blank,
            };
            composer.compose_with_state(frame, None, Rates::default(), state, output)?;
            drop(newest);
            bus.set_screen_state(state);
            sink.show(output, None, index)?;
            shared
                .display_rate
                .store(0f32.to_bits() as u64, Ordering::Relaxed);
        } else {
            continue;
        }
        last_state = Some(state);
        last_shown_at = Some(now);
        index += 1;
        bump(&counters.composed);
    }
}

/// The record thread: waits for a job, copies the snapshot into its own buffers, composes
/// the record's overlay at camera resolution and saves through the store. Finishes the job
/// in hand when asked to quit, so a record is written whole or not at all.
fn record_loop(
    setup: RecordSetup<'_>,
    composer: &Composer,
    shared: &Shared,
    frame: &mut RgbFrame,
    analysis: &mut Analysis,
    overlay: &mut RgbFrame,
    counters: &Counters,
) {
    let RecordSetup {
        store,
        manifest,
        board,
        device_id,
    } = setup;
    loop {
        let job = {
            let mut w = lock(&shared.writer);
            while w.job.is_none() && !w.quit {
                w = shared
                    .writer_wake
                    .wait(w)
                    .unwrap_or_else(|p| p.into_inner());
            }
            match w.job.take() {
                Some(job) => job,
                None => return,
            }
        };
        let copied = {
            let snap = lock(&shared.snapshot);
            snap.id == job && frame.copy_from(&snap.frame) && analysis.copy_from(&snap.analysis)
        };
        let outcome = alloc_count::scope(Bucket::Output, || {
            if !copied {
                log::error!("save: the frame to save was replaced before it could be copied; nothing was saved");
                return OUTCOME_FAILED;
            }
            if let Err(e) = composer.compose_with_state(
                frame,
                Some(analysis),
                Rates::default(),
                ScreenState::Live,
                overlay,
            ) {
                log::error!("save: cannot compose the record's overlay: {e}");
                return OUTCOME_FAILED;
            }
            let input = RecordInput {
                frame,
                overlay,
                analysis,
                manifest,
                dermcam_version: env!("CARGO_PKG_VERSION"),
                board,
                device_id,
                timestamp: SystemTime::now(),
            };
            match store.save(&input) {
                // The store logs the record and any removed by retention.
                Ok(_) => OUTCOME_SAVED,
                Err(e @ RecordError::DiskFull { .. }) => {
                    log::error!("{e}");
                    OUTCOME_DISK_FULL
                }
                Err(e) => {
                    log::error!("{e}");
                    OUTCOME_FAILED
                }
            }
        });
        bump(if outcome == OUTCOME_SAVED {
            &counters.saved
        } else {
            &counters.save_failed
        });
        shared.outcome.store(outcome, Ordering::Release);
        shared.outcomes.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::CropRect;

    fn shared() -> Shared {
        let crop = CropRect {
            x: 0,
            y: 0,
            width: 4,
            height: 4,
        };
        Shared::new(RgbFrame::new(4, 4), Analysis::new(2, 2, 2, crop))
    }

    /// The inference thread's part: fills the wanted snapshot.
    fn fill(shared: &Shared) {
        let wanted = shared.snapshot_wanted.load(Ordering::Acquire);
        lock(&shared.snapshot).id = wanted;
        shared.snapshot_filled.store(wanted, Ordering::Release);
    }

    /// The record thread's part: takes the job and reports `outcome`.
    fn finish_job(shared: &Shared, outcome: u8) -> Option<u64> {
        let job = lock(&shared.writer).job.take();
        shared.outcome.store(outcome, Ordering::Release);
        shared.outcomes.fetch_add(1, Ordering::AcqRel);
        job
    }

    #[test]
    fn freeze_waits_for_a_snapshot_then_pauses_the_model() {
        let (bus, shared, counters) = (ControlBus::new(), shared(), Counters::default());
        let t0 = Instant::now();
        let mut ui = Ui::new(
            &bus,
            &shared,
            true,
            Duration::from_secs(3),
            Duration::from_secs(5),
        );
        assert_eq!(ui.update(t0, &counters), ScreenState::Live);
        assert_eq!(bus.led_mode(), LedMode::Ready);
        bus.send(crate::controls::Action::ToggleFreeze);
        assert_eq!(
            ui.update(t0, &counters),
            ScreenState::Live,
            "no snapshot yet"
        );
        assert_eq!(bus.led_mode(), LedMode::Working);
        assert_eq!(shared.snapshot_wanted.load(Ordering::Relaxed), 1);
        fill(&shared);
        assert_eq!(ui.update(t0, &counters), ScreenState::Frozen);
        assert!(shared.paused.load(Ordering::Relaxed));
        // Frozen wins over a lost camera and a failing model.
        shared.camera_waiting.store(true, Ordering::Relaxed);
        shared.failures_in_row.store(10, Ordering::Relaxed);
        assert_eq!(ui.update(t0, &counters), ScreenState::Frozen);
        bus.send(crate::controls::Action::ToggleFreeze);
        assert_eq!(ui.update(t0, &counters), ScreenState::NoCamera);
        assert!(!shared.paused.load(Ordering::Relaxed));
        assert_eq!(bus.led_mode(), LedMode::Error);
        shared.camera_waiting.store(false, Ordering::Relaxed);
        assert_eq!(ui.update(t0, &counters), ScreenState::ModelError);
        shared.failures_in_row.store(2, Ordering::Relaxed);
        assert_eq!(
            ui.update(t0, &counters),
            ScreenState::Live,
            "2 < 3 failures"
        );
    }

    #[test]
    fn save_shows_its_outcome_for_a_while() {
        let (bus, shared, counters) = (ControlBus::new(), shared(), Counters::default());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ui = Ui::new(&bus, &shared, true, s(3), s(5));
        // Live: the next analysed frame is saved.
        bus.send(crate::controls::Action::Save);
        assert_eq!(ui.update(t0, &counters), ScreenState::Live);
        assert_eq!(lock(&shared.writer).job, None, "waits for the snapshot");
        fill(&shared);
        ui.update(t0, &counters);
        // A second save while one is under way is ignored.
        bus.send(crate::controls::Action::Save);
        ui.update(t0, &counters);
        assert_eq!(finish_job(&shared, OUTCOME_SAVED), Some(1));
        assert_eq!(ui.update(t0 + s(1), &counters), ScreenState::Saved);
        assert_eq!(ui.update(t0 + s(3), &counters), ScreenState::Saved);
        assert_eq!(
            ui.update(t0 + s(4) + Duration::from_millis(1), &counters),
            ScreenState::Live
        );
        assert_eq!(
            lock(&shared.writer).job,
            None,
            "the ignored save sent nothing"
        );
        // Frozen: the frozen snapshot is saved at once; a full disk is shown.
        bus.send(crate::controls::Action::ToggleFreeze);
        ui.update(t0 + s(5), &counters);
        fill(&shared);
        assert_eq!(ui.update(t0 + s(5), &counters), ScreenState::Frozen);
        bus.send(crate::controls::Action::Save);
        ui.update(t0 + s(5), &counters);
        assert_eq!(finish_job(&shared, OUTCOME_DISK_FULL), Some(2));
        assert_eq!(ui.update(t0 + s(6), &counters), ScreenState::DiskFull);
        assert_eq!(bus.led_mode(), LedMode::Error);
        assert_eq!(ui.update(t0 + s(10), &counters), ScreenState::Frozen);
    }

    #[test]
    fn a_save_without_an_analysis_or_a_store_fails_visibly() {
        let (bus, shared, counters) = (ControlBus::new(), shared(), Counters::default());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ui = Ui::new(&bus, &shared, true, s(3), s(5));
        bus.send(crate::controls::Action::Save);
        assert_eq!(ui.update(t0, &counters), ScreenState::Live);
        assert_eq!(ui.update(t0 + s(5), &counters), ScreenState::SaveFailed);
        assert_eq!(counters.snapshot().save_failed, 1);
        let mut no_store = Ui::new(&bus, &shared, false, s(3), s(5));
        bus.send(crate::controls::Action::Save);
        assert_eq!(no_store.update(t0, &counters), ScreenState::SaveFailed);
        assert_eq!(counters.snapshot().save_failed, 2);
    }

    #[test]
    fn copy_analysis_refuses_other_shapes() {
        let crop = CropRect {
            x: 0,
            y: 0,
            width: 4,
            height: 4,
        };
        let mut a = Analysis::new(2, 2, 2, crop);
        let mut b = Analysis::new(2, 2, 2, crop);
        b.probabilities.copy_from_slice(&[0.25, 0.75]);
        b.class = 1;
        b.heat_rgb[5] = 9;
        assert!(a.copy_from(&b));
        assert_eq!(
            (a.probabilities.clone(), a.class, a.heat_rgb[5]),
            (b.probabilities.clone(), 1, 9)
        );
        let c = Analysis::new(3, 2, 2, crop);
        assert!(!a.copy_from(&c));
    }
}
