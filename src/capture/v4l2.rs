//! V4L2 cameras (a UVC dermatoscope, or the kernel's `vivid` test driver) as a
//! [`FrameSource`], and the recovery logic that keeps any source going through the faults
//! cameras have in the field.
//!
//! Two layers:
//!
//! - [`V4l2Camera`] talks to one device with the `v4l` crate: opens it by path or by a stable
//!   `/dev/v4l/by-id` / `by-path` name, negotiates format, size and rate
//!   ([`super::negotiate`]), `VIDIOC_S_FMT`, honours `bytesperline` as the stride, sets the
//!   rate with `VIDIOC_S_PARM`, and streams through a fixed number of mmap buffers. Each
//!   dequeued buffer is lent to the caller's closure in place (no copy) and re-queued on the
//!   next poll. It reports faults as errors and never retries on its own.
//! - [`Supervised`] wraps any source that can [`Reconnect`] and turns those errors into
//!   recovery: a lost device (`ENODEV`, `EIO`, ...) is closed and reopened with bounded
//!   exponential back-off; a dequeue timeout restarts the stream, and repeated timeouts
//!   reopen the device; a run of frames the driver flags as erroneous restarts the stream.
//!   Time is passed in: a source waiting to retry returns [`Poll::Wait`] with the instant of
//!   the next try instead of sleeping, so it never blocks the loop and never spins. Every
//!   event is counted in a [`CaptureMonitor`] that other threads can read (status line,
//!   on-screen state) and logged once per transition.
//!
//! [`V4l2Source`] is the two together.
//!
//! # The `v4l` crate's traps, and what this module does about them
//!
//! - After a dequeue timeout (or any failed dequeue), `MmapStream::next` re-queues the index
//!   it handed out last, which is already queued, and gets `EINVAL` for ever after. The
//!   stream is therefore dropped after **any** failed `next()` and recreated (buffers
//!   re-requested and re-mapped) before the next frame.
//! - `MmapStream`'s and its arena's `Drop` panic when `VIDIOC_STREAMOFF` / `VIDIOC_REQBUFS`
//!   fail with anything but `ENODEV`. Streams are stopped explicitly first; if that fails
//!   with another error the stream is leaked (its mappings and descriptor stay until the
//!   process ends, logged) rather than dropped into a panic.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufFlags, Type as BufType};
use v4l::capability::Flags as CapFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

use super::negotiate::{self, Choice, Interval, NegotiateError, Offered, Preference, Rates};
use super::{CaptureError, FrameFormat, FrameSource, PixelFormat, Poll, RawFrame};
use crate::alloc_count::{self, Bucket};

/// Errors opening or configuring a V4L2 device.
#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    /// The device node could not be opened.
    #[error("cannot open camera {path}: {source}")]
    Open {
        /// Device node.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The node is not a streaming video capture device.
    #[error("{path} ({driver}: {card}) is not a video capture device with streaming I/O (a metadata or output node?)")]
    NotACamera {
        /// Device node.
        path: PathBuf,
        /// Driver name.
        driver: String,
        /// Card name.
        card: String,
    },
    /// No usable format.
    #[error("camera {path}: {source}")]
    Negotiate {
        /// Device node.
        path: PathBuf,
        /// Why.
        source: NegotiateError,
    },
    /// An ioctl failed.
    #[error("camera {path}: {op} failed: {source}")]
    Ioctl {
        /// Device node.
        path: PathBuf,
        /// The ioctl.
        op: &'static str,
        /// Cause.
        source: io::Error,
    },
    /// `VIDIOC_S_FMT` gave another format than asked.
    #[error("camera {path}: asked for {asked}, the driver set {got}")]
    FormatRejected {
        /// Device node.
        path: PathBuf,
        /// What was asked.
        asked: String,
        /// What the driver set.
        got: String,
    },
    /// The camera came back with another format than the pipeline was sized for.
    #[error("camera {path} came back as {got:?}, but the pipeline was sized for {expected:?}: restart dermcam to use it")]
    FormatChanged {
        /// Device node.
        path: PathBuf,
        /// The stream's fixed format.
        expected: FrameFormat,
        /// What the device now gives.
        got: FrameFormat,
    },
    /// The configuration is unusable.
    #[error("v4l2 source: {0}")]
    Config(String),
}

/// Whether an OS error means the device is gone (unplugged, reset, or failed).
pub fn is_lost(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENODEV
                | libc::EIO
                | libc::ENXIO
                | libc::ENOENT
                | libc::ESHUTDOWN
                | libc::EPIPE
                | libc::EBADF
        )
    )
}

/// The JPEG in an MJPEG buffer: `bytesused` may include padding after the EOI marker
/// (some UVC cameras pad to a fixed size), which the decoder refuses; the payload is cut
/// after the last `FF D9`. A buffer without one is returned whole (the decoder then reports
/// the truncated JPEG and the frame is counted as corrupt).
pub fn mjpeg_payload(data: &[u8]) -> &[u8] {
    if data.ends_with(&[0xFF, 0xD9]) {
        return data;
    }
    match data.windows(2).rposition(|w| w == [0xFF, 0xD9]) {
        Some(at) => &data[..at + 2],
        None => data,
    }
}

/// Resolves a configured device name to a node path:
/// an absolute path as is; `videoN` or `N` as `/dev/videoN`; any other name as
/// `/dev/v4l/by-id/NAME` or `/dev/v4l/by-path/NAME` (whichever exists, by-id first).
/// Resolved again on every reconnect, so a stable name follows the camera to a new node.
pub fn resolve_device(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() || name.starts_with('.') {
        return p.to_path_buf();
    }
    if let Some(n) = name.strip_prefix("video").or(Some(name)) {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return PathBuf::from(format!("/dev/video{n}"));
        }
    }
    for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
        let candidate = Path::new(dir).join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    Path::new("/dev/v4l/by-id").join(name)
}

/// How to open and run a V4L2 camera.
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Config {
    /// Device path or stable name (see [`resolve_device`]).
    pub device: String,
    /// Pixel formats in order of preference.
    pub formats: Vec<PixelFormat>,
    /// Desired width.
    pub width: u32,
    /// Desired height.
    pub height: u32,
    /// Desired frames per second (set with `VIDIOC_S_PARM`).
    pub fps: u32,
    /// mmap buffers (the driver may grant more).
    pub buffers: u32,
    /// How long a dequeue may wait for a frame before it counts as a timeout.
    pub timeout: Duration,
    /// Recovery settings.
    pub supervise: SuperviseOptions,
}

impl Default for V4l2Config {
    fn default() -> Self {
        V4l2Config {
            device: "/dev/video0".into(),
            formats: vec![PixelFormat::Mjpeg, PixelFormat::Yuyv],
            width: 640,
            height: 480,
            fps: 15,
            buffers: 4,
            timeout: Duration::from_secs(2),
            supervise: SuperviseOptions::default(),
        }
    }
}

impl V4l2Config {
    /// The negotiation preference.
    pub fn preference(&self) -> Preference {
        Preference {
            formats: self.formats.clone(),
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
    }

    /// The format assumed when the camera is absent at start: the first preferred format at
    /// the configured size, packed without padding. A camera plugged in later must give
    /// exactly this (the pipeline's buffers are sized for it).
    pub fn expected_format(&self) -> FrameFormat {
        let pixel = self.formats.first().copied().unwrap_or(PixelFormat::Mjpeg);
        FrameFormat {
            pixel,
            width: self.width,
            height: self.height,
            stride: pixel.bytes_per_pixel().map_or(0, |b| self.width * b as u32),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Recovery: back-off, status, counters, and the supervisor.

/// Bounded exponential back-off: `initial`, `2 initial`, `4 initial`, ... up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.initial
            .saturating_mul(1u32 << shift)
            .min(self.max)
            .max(Duration::from_millis(1))
    }
}

/// Recovery settings of [`Supervised`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuperviseOptions {
    /// Back-off between reconnect attempts.
    pub reconnect: Backoff,
    /// Back-off after consecutive timeouts (before the stream is polled again).
    pub timeout: Backoff,
    /// Consecutive timeouts after which the device is closed and reopened (a stall).
    pub reopen_after_timeouts: u32,
    /// Consecutive driver-flagged frames after which the stream is restarted.
    pub restart_after_flagged: u32,
}

impl Default for SuperviseOptions {
    fn default() -> Self {
        SuperviseOptions {
            reconnect: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            timeout: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(500),
            },
            reopen_after_timeouts: 3,
            restart_after_flagged: 30,
        }
    }
}

/// What a supervised source is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureStatus {
    /// Frames are flowing.
    Streaming,
    /// The camera was lost; reconnect attempt `attempt` is due next.
    Reconnecting {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// The camera has not been seen since start (absent, or not plugged in yet).
    NoCamera,
}

impl std::fmt::Display for CaptureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureStatus::Streaming => f.write_str("streaming"),
            CaptureStatus::Reconnecting { attempt } => {
                write!(f, "reconnecting (attempt {attempt})")
            }
            CaptureStatus::NoCamera => f.write_str("no camera"),
        }
    }
}

/// Counters of a supervised source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Frames lent to the consumer.
    pub frames: u64,
    /// Frames the camera produced that never reached us (gaps in the driver's sequence).
    pub dropped: u64,
    /// Frames the driver flagged as erroneous (lent with `error_flag`).
    pub flagged: u64,
    /// Dequeue timeouts.
    pub timeouts: u64,
    /// Successful reconnects after the camera was lost (or stalled).
    pub reconnects: u64,
    /// Failed reconnect attempts.
    pub failed_reconnects: u64,
    /// Stream restarts (after a timeout or a run of flagged frames).
    pub restarts: u64,
    /// Stalls: runs of consecutive timeouts that made the device be reopened.
    pub stalls: u64,
}

/// Shared, lock-free view of a supervised source's state and counters.
#[derive(Debug, Default)]
pub struct CaptureMonitor {
    state: AtomicU32,
    attempt: AtomicU32,
    frames: AtomicU64,
    dropped: AtomicU64,
    flagged: AtomicU64,
    timeouts: AtomicU64,
    reconnects: AtomicU64,
    failed_reconnects: AtomicU64,
    restarts: AtomicU64,
    stalls: AtomicU64,
}

const STATE_STREAMING: u32 = 0;
const STATE_RECONNECTING: u32 = 1;
const STATE_NO_CAMERA: u32 = 2;

fn add(a: &AtomicU64, n: u64) -> u64 {
    a.fetch_add(n, Ordering::Relaxed) + n
}

impl CaptureMonitor {
    /// The current state.
    pub fn status(&self) -> CaptureStatus {
        match self.state.load(Ordering::Relaxed) {
            STATE_STREAMING => CaptureStatus::Streaming,
            STATE_RECONNECTING => CaptureStatus::Reconnecting {
                attempt: self.attempt.load(Ordering::Relaxed),
            },
            _ => CaptureStatus::NoCamera,
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> CaptureStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CaptureStats {
            frames: l(&self.frames),
            dropped: l(&self.dropped),
            flagged: l(&self.flagged),
            timeouts: l(&self.timeouts),
            reconnects: l(&self.reconnects),
            failed_reconnects: l(&self.failed_reconnects),
            restarts: l(&self.restarts),
            stalls: l(&self.stalls),
        }
    }

    fn set(&self, state: u32, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
    }
}

/// A source that can lose its device and get it back.
pub trait Reconnect: FrameSource {
    /// Releases the device after it was lost (or stalled).
    fn disconnect(&mut self);
    /// Tries to open the device again and start streaming with the same format.
    fn reconnect(&mut self) -> Result<(), CaptureError>;
    /// Restarts streaming after a timeout or a run of bad frames (buffers re-queued).
    fn restart(&mut self) -> Result<(), CaptureError>;
}

/// A source that cannot be lost (a recording, stills): reconnecting is a no-op. Lets
/// [`Supervised`] and the fault injector drive any source.
#[derive(Debug)]
pub struct Steady<S>(pub S);

impl<S: FrameSource> FrameSource for Steady<S> {
    fn format(&self) -> FrameFormat {
        self.0.format()
    }
    fn max_frame_len(&self) -> usize {
        self.0.max_frame_len()
    }
    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        self.0.poll_frame(now, consume)
    }
    fn describe(&self) -> &str {
        self.0.describe()
    }
    fn capture_status(&self) -> CaptureStatus {
        self.0.capture_status()
    }
}

impl<S: FrameSource> Reconnect for Steady<S> {
    fn disconnect(&mut self) {}
    fn reconnect(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
    fn restart(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// Waiting to (re)connect: `lost` = the camera had been streaming before.
    Retry {
        next_try: Instant,
        attempt: u32,
        lost: bool,
    },
    /// Waiting after a timeout before polling again.
    Pause {
        until: Instant,
    },
}

/// Whether an error is a fault to recover from (else it is returned to the caller).
fn recoverable(e: &CaptureError) -> bool {
    matches!(
        e,
        CaptureError::Disconnected { .. }
            | CaptureError::Timeout { .. }
            | CaptureError::V4l2(V4l2Error::Ioctl { .. })
    )
}

/// Keeps a [`Reconnect`] source going through lost devices, timeouts and bad frames (see the
/// module docs). Never sleeps: it returns [`Poll::Wait`] until the next try is due.
#[derive(Debug)]
pub struct Supervised<S> {
    inner: S,
    options: SuperviseOptions,
    state: State,
    monitor: Arc<CaptureMonitor>,
    next_sequence: u64,
    consecutive_timeouts: u32,
    consecutive_flagged: u32,
    bad_restarts: u32,
}

impl<S: Reconnect> Supervised<S> {
    /// Supervises a connected source.
    pub fn new(inner: S, options: SuperviseOptions) -> Self {
        Supervised {
            inner,
            options,
            state: State::Streaming,
            monitor: Arc::new(CaptureMonitor::default()),
            next_sequence: 0,
            consecutive_timeouts: 0,
            consecutive_flagged: 0,
            bad_restarts: 0,
        }
    }

    /// Supervises a source whose device is not there yet: the first connect is tried at
    /// `first_try`, and the status is [`CaptureStatus::NoCamera`] until it succeeds.
    pub fn not_connected(inner: S, options: SuperviseOptions, first_try: Instant) -> Self {
        let s = Supervised::new(inner, options);
        s.monitor.set(STATE_NO_CAMERA, 1);
        Supervised {
            state: State::Retry {
                next_try: first_try,
                attempt: 1,
                lost: false,
            },
            ..s
        }
    }

    /// The current state.
    pub fn status(&self) -> CaptureStatus {
        self.monitor.status()
    }

    /// A copy of the counters.
    pub fn stats(&self) -> CaptureStats {
        self.monitor.stats()
    }

    /// A shared handle to the state and counters, for other threads.
    pub fn monitor(&self) -> Arc<CaptureMonitor> {
        Arc::clone(&self.monitor)
    }

    /// The supervised source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The supervised source, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn lose(&mut self, now: Instant, error: &CaptureError) -> Poll {
        self.inner.disconnect();
        self.consecutive_timeouts = 0;
        let next_try = now + self.options.reconnect.delay(1);
        self.state = State::Retry {
            next_try,
            attempt: 1,
            lost: true,
        };
        self.monitor.set(STATE_RECONNECTING, 1);
        let describe = self.inner.describe();
        alloc_count::scope(Bucket::Output, || {
            log::warn!("{describe}: {error}; reconnecting")
        });
        Poll::Wait(next_try)
    }

    fn try_connect(&mut self, now: Instant, attempt: u32, lost: bool) -> Option<Poll> {
        match self.inner.reconnect() {
            Ok(()) => {
                self.state = State::Streaming;
                self.consecutive_timeouts = 0;
                self.consecutive_flagged = 0;
                self.monitor.set(STATE_STREAMING, 0);
                if lost {
                    add(&self.monitor.reconnects, 1);
                }
                let describe = self.inner.describe();
                alloc_count::scope(Bucket::Output, || {
                    log::info!(
                        "{describe}: {} after {attempt} attempt(s)",
                        if lost { "reconnected" } else { "camera found" }
                    )
                });
                None
            }
            Err(e) => {
                add(&self.monitor.failed_reconnects, 1);
                let attempt = attempt.saturating_add(1);
                let next_try = now + self.options.reconnect.delay(attempt);
                self.state = State::Retry {
                    next_try,
                    attempt,
                    lost,
                };
                self.monitor.set(
                    if lost {
                        STATE_RECONNECTING
                    } else {
                        STATE_NO_CAMERA
                    },
                    attempt,
                );
                // Log the first failures and then every 16th, not every attempt.
                if attempt <= 3 || attempt % 16 == 0 {
                    let describe = self.inner.describe();
                    let delay = self.options.reconnect.delay(attempt);
                    alloc_count::scope(Bucket::Output, || {
                        log::warn!(
                            "{describe}: attempt {} failed: {e}; next try in {delay:?}",
                            attempt - 1
                        )
                    });
                }
                Some(Poll::Wait(next_try))
            }
        }
    }
}

impl<S: Reconnect> FrameSource for Supervised<S> {
    fn format(&self) -> FrameFormat {
        self.inner.format()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        match self.state {
            State::Streaming => {}
            State::Pause { until } => {
                if now < until {
                    return Ok(Poll::Wait(until));
                }
                self.state = State::Streaming;
            }
            State::Retry {
                next_try,
                attempt,
                lost,
            } => {
                if now < next_try {
                    return Ok(Poll::Wait(next_try));
                }
                if let Some(wait) = self.try_connect(now, attempt, lost) {
                    return Ok(wait);
                }
            }
        }
        let monitor = &*self.monitor;
        let next_sequence = &mut self.next_sequence;
        let mut flagged = false;
        let mut lend = |raw: RawFrame<'_>| {
            // A gap in the sequence is frames lost before they reached us (the driver had no
            // free buffer, or a wrapper dropped them); a step back is a restarted count.
            // Sequences start at 0 (V4L2 numbers frames from STREAMON; V4l2Camera continues
            // the count across restarts).
            if raw.sequence > *next_sequence {
                add(&monitor.dropped, raw.sequence - *next_sequence);
            }
            *next_sequence = raw.sequence + 1;
            add(&monitor.frames, 1);
            if raw.error_flag {
                add(&monitor.flagged, 1);
                flagged = true;
            }
            consume(raw);
        };
        match self.inner.poll_frame(now, &mut lend) {
            Ok(Poll::Frame) => {
                self.consecutive_timeouts = 0;
                if flagged {
                    self.consecutive_flagged += 1;
                    if self.consecutive_flagged >= self.options.restart_after_flagged {
                        self.consecutive_flagged = 0;
                        add(&self.monitor.restarts, 1);
                        let describe = self.inner.describe();
                        let n = self.options.restart_after_flagged;
                        alloc_count::scope(Bucket::Output, || {
                            log::warn!(
                                "{describe}: {n} erroneous frames in a row; restarting the stream"
                            )
                        });
                        if let Err(e) = self.inner.restart() {
                            return Ok(self.lose(now, &e));
                        }
                        // Back off more with every restart that did not help.
                        self.bad_restarts = self.bad_restarts.saturating_add(1);
                        let until = now + self.options.timeout.delay(self.bad_restarts);
                        self.state = State::Pause { until };
                    }
                } else {
                    self.consecutive_flagged = 0;
                    self.bad_restarts = 0;
                }
                Ok(Poll::Frame)
            }
            Ok(other) => Ok(other),
            Err(e) if !recoverable(&e) => Err(e),
            Err(CaptureError::Timeout { waited }) => {
                add(&self.monitor.timeouts, 1);
                self.consecutive_timeouts += 1;
                if self.consecutive_timeouts >= self.options.reopen_after_timeouts {
                    add(&self.monitor.stalls, 1);
                    let e = CaptureError::Timeout { waited };
                    return Ok(self.lose(now, &e));
                }
                if self.consecutive_timeouts == 1 {
                    let describe = self.inner.describe();
                    alloc_count::scope(Bucket::Output, || {
                        log::warn!("{describe}: no frame within {waited:?}; restarting the stream")
                    });
                }
                add(&self.monitor.restarts, 1);
                if let Err(e) = self.inner.restart() {
                    return Ok(self.lose(now, &e));
                }
                let until = now + self.options.timeout.delay(self.consecutive_timeouts);
                self.state = State::Pause { until };
                Ok(Poll::Wait(until))
            }
            Err(CaptureError::V4l2(V4l2Error::Ioctl { path, op, source })) if !is_lost(&source) => {
                // A dequeue that failed for another reason (EINVAL, EAGAIN...): restart the
                // stream; if that fails too, reopen the device.
                let e = CaptureError::V4l2(V4l2Error::Ioctl { path, op, source });
                add(&self.monitor.restarts, 1);
                let describe = self.inner.describe();
                alloc_count::scope(Bucket::Output, || {
                    log::warn!("{describe}: {e}; restarting the stream")
                });
                if let Err(e) = self.inner.restart() {
                    return Ok(self.lose(now, &e));
                }
                let until = now + self.options.timeout.delay(1);
                self.state = State::Pause { until };
                Ok(Poll::Wait(until))
            }
            Err(e) => Ok(self.lose(now, &e)),
        }
    }

    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn capture_status(&self) -> CaptureStatus {
        self.monitor.status()
    }
}

// ---------------------------------------------------------------------------------------
// The device.

/// What one device offers (for `dermcam devices` and negotiation).
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Device node.
    pub path: PathBuf,
    /// Driver.
    pub driver: String,
    /// Card name.
    pub card: String,
    /// Bus.
    pub bus: String,
    /// Stable names (`/dev/v4l/by-id/...`, `/dev/v4l/by-path/...`) pointing at this node.
    pub stable_names: Vec<PathBuf>,
    /// Whether it is a streaming video capture node.
    pub is_capture: bool,
    /// Offered formats, sizes and rates.
    pub offered: Vec<Offered>,
    /// Format descriptions (fourcc, driver's description).
    pub descriptions: Vec<([u8; 4], String)>,
}

/// Everything a device offers for capture, flattened for [`negotiate::choose`]. Stepwise or
/// continuous sizes are offered as their minimum, their maximum and `want` (clamped and
/// aligned to the steps) when given.
pub fn enumerate(dev: &Device, want: Option<(u32, u32)>) -> io::Result<Vec<Offered>> {
    let mut out = Vec::new();
    for desc in dev.enum_formats()? {
        let fourcc = desc.fourcc.repr;
        let sizes = dev.enum_framesizes(desc.fourcc).unwrap_or_default();
        let mut wh: Vec<(u32, u32)> = Vec::new();
        for s in sizes {
            match s.size {
                FrameSizeEnum::Discrete(d) => wh.push((d.width, d.height)),
                FrameSizeEnum::Stepwise(st) => {
                    wh.push((st.min_width, st.min_height));
                    wh.push((st.max_width, st.max_height));
                    if let Some((w, h)) = want {
                        let align = |v: u32, min: u32, max: u32, step: u32| {
                            let v = v.clamp(min, max);
                            let step = step.max(1);
                            min + (v - min) / step * step
                        };
                        wh.push((
                            align(w, st.min_width, st.max_width, st.step_width),
                            align(h, st.min_height, st.max_height, st.step_height),
                        ));
                    }
                }
            }
        }
        wh.dedup();
        for (width, height) in wh {
            let rates = match dev.enum_frameintervals(desc.fourcc, width, height) {
                Ok(list) => {
                    let mut discrete = Vec::new();
                    let mut range = None;
                    for i in list {
                        match i.interval {
                            FrameIntervalEnum::Discrete(f) => discrete.push(Interval {
                                num: f.numerator,
                                den: f.denominator,
                            }),
                            FrameIntervalEnum::Stepwise(s) => {
                                range = Some(Rates::Range {
                                    min: Interval {
                                        num: s.min.numerator,
                                        den: s.min.denominator,
                                    },
                                    max: Interval {
                                        num: s.max.numerator,
                                        den: s.max.denominator,
                                    },
                                })
                            }
                        }
                    }
                    range.unwrap_or(Rates::Discrete(discrete))
                }
                Err(_) => Rates::Discrete(Vec::new()),
            };
            out.push(Offered {
                fourcc,
                width,
                height,
                rates,
            });
        }
    }
    Ok(out)
}

/// Stable names in `/dev/v4l/by-id` and `/dev/v4l/by-path` that point at `node`.
pub fn stable_names(node: &Path) -> Vec<PathBuf> {
    let target = std::fs::canonicalize(node).unwrap_or_else(|_| node.to_path_buf());
    let mut names = Vec::new();
    for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| std::fs::canonicalize(p).is_ok_and(|t| t == target))
                .collect();
            found.sort();
            names.extend(found);
        }
    }
    names
}

/// Describes one device node.
pub fn probe(path: &Path) -> Result<DeviceInfo, V4l2Error> {
    let dev = Device::with_path(path).map_err(|source| V4l2Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let caps = dev.query_caps().map_err(|source| V4l2Error::Ioctl {
        path: path.to_path_buf(),
        op: "VIDIOC_QUERYCAP",
        source,
    })?;
    let is_capture = caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
        && caps.capabilities.contains(CapFlags::STREAMING);
    let (offered, descriptions) = if is_capture {
        let descriptions = dev
            .enum_formats()
            .map(|v| {
                v.into_iter()
                    .map(|d| (d.fourcc.repr, d.description))
                    .collect()
            })
            .unwrap_or_default();
        (enumerate(&dev, None).unwrap_or_default(), descriptions)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(DeviceInfo {
        path: path.to_path_buf(),
        driver: caps.driver,
        card: caps.card,
        bus: caps.bus,
        stable_names: stable_names(path),
        is_capture,
        offered,
        descriptions,
    })
}

/// `/dev/video*` nodes, in numeric order.
pub fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n: u32 = name.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// An open, streaming device.
struct Live {
    // Dropped before `device` (field order).
    stream: Option<MmapStream<'static>>,
    device: Device,
    path: PathBuf,
    /// The driver's timestamp of the first frame of the current stream.
    driver_base: Option<Duration>,
    /// Stream time at the start of the current stream.
    time_base: Duration,
    /// Our sequence number of the driver's frame 0 of the current stream.
    sequence_base: u64,
}

impl Live {
    /// Creates the mmap stream (VIDIOC_REQBUFS with the configured buffer count and dequeue
    /// timeout); frame times and sequence numbers continue from the given bases.
    fn new_stream(
        &mut self,
        config: &V4l2Config,
        time_base: Duration,
        sequence_base: u64,
    ) -> Result<(), CaptureError> {
        let mut stream =
            MmapStream::with_buffers(&self.device, BufType::VideoCapture, config.buffers)
                .map_err(ioctl_err(&self.path, "VIDIOC_REQBUFS"))?;
        stream.set_timeout(config.timeout);
        self.stream = Some(stream);
        self.driver_base = None;
        self.time_base = time_base;
        self.sequence_base = sequence_base;
        Ok(())
    }
}

/// One V4L2 capture device, without recovery (wrap it in [`Supervised`]; see
/// [`V4l2Source`]).
pub struct V4l2Camera {
    config: V4l2Config,
    format: Option<FrameFormat>,
    interval: Interval,
    max_len: usize,
    describe: String,
    live: Option<Live>,
    started: Option<Instant>,
    next_sequence: u64,
    last_timestamp: Duration,
}

impl std::fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("describe", &self.describe)
            .field("format", &self.format)
            .field("connected", &self.live.is_some())
            .finish()
    }
}

fn ioctl_err<'p>(path: &'p Path, op: &'static str) -> impl Fn(io::Error) -> CaptureError + 'p {
    move |source| {
        if is_lost(&source) {
            CaptureError::Disconnected { op, source }
        } else {
            CaptureError::V4l2(V4l2Error::Ioctl {
                path: path.to_path_buf(),
                op,
                source,
            })
        }
    }
}

/// Stops a stream and drops it without letting the `v4l` crate's `Drop` panic.
fn release_stream(stream: MmapStream<'static>) {
    let mut stream = stream;
    match stream.stop() {
        Ok(()) => drop(stream),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => drop(stream),
        Err(e) => {
            alloc_count::scope(Bucket::Output, || {
                log::warn!("VIDIOC_STREAMOFF failed ({e}); leaking the stream's buffers rather than panicking in v4l's Drop")
            });
            std::mem::forget(stream);
        }
    }
}

impl V4l2Camera {
    /// A camera not opened yet: call [`Reconnect::reconnect`] to open it.
    pub fn new(config: V4l2Config) -> Result<Self, V4l2Error> {
        if config.formats.is_empty() {
            return Err(V4l2Error::Config("formats is empty".into()));
        }
        if !(1..=32).contains(&config.buffers) {
            return Err(V4l2Error::Config(format!(
                "buffers is {}; must be within 1..=32",
                config.buffers
            )));
        }
        let describe = format!(
            "v4l2 {} (not connected)",
            resolve_device(&config.device).display()
        );
        Ok(V4l2Camera {
            interval: Interval::from_fps(config.fps.max(1)),
            max_len: 0,
            format: None,
            describe,
            live: None,
            started: None,
            next_sequence: 0,
            last_timestamp: Duration::ZERO,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &V4l2Config {
        &self.config
    }

    /// The frame interval the driver accepted (or the asked one, before connecting).
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// Fixes the stream format without a device (the camera is absent at start).
    fn assume_format(&mut self) {
        let f = self.config.expected_format();
        self.max_len = f
            .packed_len()
            .unwrap_or(f.width as usize * f.height as usize * 2);
        self.describe = format!(
            "v4l2 {} (not connected; expecting {} {}x{})",
            resolve_device(&self.config.device).display(),
            f.pixel,
            f.width,
            f.height
        );
        self.format = Some(f);
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        let path = resolve_device(&self.config.device);
        let device = Device::with_path(&path).map_err(|source| {
            if is_lost(&source) {
                CaptureError::Disconnected { op: "open", source }
            } else {
                CaptureError::V4l2(V4l2Error::Open {
                    path: path.clone(),
                    source,
                })
            }
        })?;
        let caps = device
            .query_caps()
            .map_err(ioctl_err(&path, "VIDIOC_QUERYCAP"))?;
        if !(caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
            && caps.capabilities.contains(CapFlags::STREAMING))
        {
            return Err(V4l2Error::NotACamera {
                path,
                driver: caps.driver,
                card: caps.card,
            }
            .into());
        }
        let choice = match self.format {
            Some(f) => Choice {
                pixel: f.pixel,
                width: f.width,
                height: f.height,
                interval: self.interval,
                size_match: negotiate::SizeMatch::Exact,
                rate_match: negotiate::RateMatch::Exact,
                preferred: true,
            },
            None => {
                let offered = enumerate(&device, Some((self.config.width, self.config.height)))
                    .map_err(ioctl_err(&path, "VIDIOC_ENUM_FMT"))?;
                let choice =
                    negotiate::choose(&offered, &self.config.preference()).map_err(|source| {
                        V4l2Error::Negotiate {
                            path: path.clone(),
                            source,
                        }
                    })?;
                log::info!("{}: negotiated {choice}", path.display());
                choice
            }
        };
        let asked = Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.pixel.fourcc()),
        );
        let set = device
            .set_format(&asked)
            .map_err(ioctl_err(&path, "VIDIOC_S_FMT"))?;
        if PixelFormat::from_fourcc(set.fourcc.repr) != Some(choice.pixel)
            || set.width != choice.width
            || set.height != choice.height
        {
            return Err(V4l2Error::FormatRejected {
                path,
                asked: format!("{} {}x{}", choice.pixel, choice.width, choice.height),
                got: format!(
                    "{} {}x{}",
                    String::from_utf8_lossy(&set.fourcc.repr),
                    set.width,
                    set.height
                ),
            }
            .into());
        }
        let packed = choice.pixel.bytes_per_pixel();
        let stride = match packed {
            Some(bpp) => set.stride.max(choice.width * bpp as u32),
            None => 0,
        };
        let got = FrameFormat {
            pixel: choice.pixel,
            width: choice.width,
            height: choice.height,
            stride,
        };
        if let Some(expected) = self.format {
            if expected != got {
                return Err(V4l2Error::FormatChanged {
                    path,
                    expected,
                    got,
                }
                .into());
            }
        }
        // Set the rate explicitly: some drivers (vivid) stream at 5 fps until told.
        let params = Parameters::new(Fraction::new(choice.interval.num, choice.interval.den));
        match device.set_params(&params) {
            Ok(p) if p.interval.numerator != 0 && p.interval.denominator != 0 => {
                self.interval = Interval {
                    num: p.interval.numerator,
                    den: p.interval.denominator,
                }
            }
            Ok(_) => self.interval = choice.interval,
            Err(e) if is_lost(&e) => {
                return Err(CaptureError::Disconnected {
                    op: "VIDIOC_S_PARM",
                    source: e,
                })
            }
            Err(e) => {
                log::warn!(
                    "{}: VIDIOC_S_PARM {} failed ({e}); the driver's rate is used",
                    path.display(),
                    choice.interval
                );
                self.interval = choice.interval;
            }
        }
        let frame_len = got
            .packed_len()
            .unwrap_or(0)
            .max(set.size as usize)
            .max(self.max_len);
        self.max_len = frame_len;
        self.format = Some(got);
        self.describe = format!(
            "v4l2 {} ({}: {}) {} {}x{} stride {} at {}",
            path.display(),
            caps.driver,
            caps.card,
            got.pixel,
            got.width,
            got.height,
            got.stride,
            self.interval
        );
        self.live = Some(Live {
            stream: None,
            device,
            path,
            driver_base: None,
            time_base: self.last_timestamp,
            sequence_base: self.next_sequence,
        });
        self.start_stream()
    }

    fn start_stream(&mut self) -> Result<(), CaptureError> {
        let Some(live) = self.live.as_mut() else {
            return Err(CaptureError::Disconnected {
                op: "start",
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        };
        if let Some(old) = live.stream.take() {
            release_stream(old);
        }
        live.new_stream(&self.config, self.last_timestamp, self.next_sequence)
    }

    /// Opens the device now; `Ok(false)` when it is absent (the format is then assumed from
    /// the configuration, see [`V4l2Config::expected_format`]).
    fn open_or_assume(&mut self) -> Result<bool, CaptureError> {
        match self.open() {
            Ok(()) => Ok(true),
            Err(CaptureError::Disconnected { .. })
            | Err(CaptureError::V4l2(V4l2Error::Open { .. })) => {
                self.assume_format();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl FrameSource for V4l2Camera {
    fn format(&self) -> FrameFormat {
        self.format.unwrap_or_else(|| self.config.expected_format())
    }

    fn max_frame_len(&self) -> usize {
        self.max_len
    }

    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        let started = *self.started.get_or_insert(now);
        let format = self.format();
        let Some(live) = self.live.as_mut() else {
            return Err(CaptureError::Disconnected {
                op: "VIDIOC_DQBUF",
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        };
        if live.stream.is_none() {
            // Recreated after a failed dequeue (see the module docs).
            live.new_stream(&self.config, self.last_timestamp, self.next_sequence)?;
        }
        let Some(stream) = live.stream.as_mut() else {
            return Ok(Poll::Wait(now));
        };
        match stream.next() {
            Ok((buf, meta)) => {
                let driver_ts = Duration::from_secs(meta.timestamp.sec.max(0) as u64)
                    + Duration::from_micros(meta.timestamp.usec.max(0) as u64);
                let timestamp = match live.driver_base {
                    Some(base) => live.time_base + driver_ts.saturating_sub(base),
                    None => {
                        live.driver_base = Some(driver_ts);
                        // A new stream continues from where the last one stopped.
                        live.time_base = now.saturating_duration_since(started).max(live.time_base);
                        live.time_base
                    }
                };
                let sequence = live.sequence_base + meta.sequence as u64;
                let used = (meta.bytesused as usize).min(buf.len());
                let data = match format.pixel {
                    PixelFormat::Mjpeg => mjpeg_payload(&buf[..used]),
                    _ => &buf[..used],
                };
                self.next_sequence = sequence + 1;
                self.last_timestamp = timestamp;
                consume(RawFrame {
                    format,
                    sequence,
                    timestamp,
                    error_flag: meta.flags.contains(BufFlags::ERROR) || used == 0,
                    data,
                });
                Ok(Poll::Frame)
            }
            Err(e) => {
                // The v4l crate's stream state is stale after any failed `next()`: drop it
                // and build a new one on the next poll (or in `restart`).
                if let Some(old) = live.stream.take() {
                    release_stream(old);
                }
                if e.kind() == io::ErrorKind::TimedOut {
                    Err(CaptureError::Timeout {
                        waited: self.config.timeout,
                    })
                } else {
                    Err(ioctl_err(&live.path, "VIDIOC_DQBUF")(e))
                }
            }
        }
    }

    fn describe(&self) -> &str {
        &self.describe
    }
}

impl Reconnect for V4l2Camera {
    fn disconnect(&mut self) {
        if let Some(mut live) = self.live.take() {
            if let Some(stream) = live.stream.take() {
                release_stream(stream);
            }
        }
    }

    fn reconnect(&mut self) -> Result<(), CaptureError> {
        self.disconnect();
        self.open()
    }

    fn restart(&mut self) -> Result<(), CaptureError> {
        self.start_stream()
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// A V4L2 camera with recovery: what `dermcam run` and `dermcam record` capture from.
pub type V4l2Source = Supervised<V4l2Camera>;

impl Supervised<V4l2Camera> {
    /// Opens the camera. A camera that is absent is not an error: the source starts in
    /// [`CaptureStatus::NoCamera`] with the format from the configuration and keeps trying
    /// (with back-off) from `now`. A camera that is there but unusable (no supported format,
    /// not a capture node) is an error.
    pub fn open(config: V4l2Config, now: Instant) -> Result<Self, CaptureError> {
        let options = config.supervise;
        let mut camera = V4l2Camera::new(config)?;
        if camera.open_or_assume()? {
            Ok(Supervised::new(camera, options))
        } else {
            let describe = camera.describe().to_string();
            log::warn!("{describe}: camera not found; waiting for it");
            Ok(Supervised::not_connected(
                camera,
                options,
                now + options.reconnect.delay(1),
            ))
        }
    }
}
