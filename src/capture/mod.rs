//! Frame sources: where raw camera frames come from (a recording, a folder of stills, and
//! later a V4L2 camera), behind one trait.
//!
//! A source lends each frame to the caller through a closure, like smoltcp's devices lend
//! their buffers: the bytes stay in the source's own buffer and the caller converts them
//! straight into a pooled RGB frame. Time is passed in, so replay is deterministic.

pub mod fault;
pub mod negotiate;
pub mod recording;
pub mod stills;
pub mod v4l2;

use std::time::{Duration, Instant};

/// Pixel formats dermcam understands, named by their V4L2 fourcc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed YUV 4:2:2, `Y0 U Y1 V`, BT.601 limited range.
    Yuyv,
    /// Motion JPEG: each frame one baseline JPEG.
    Mjpeg,
    /// Packed 8-bit RGB.
    Rgb24,
}

impl PixelFormat {
    /// The V4L2 fourcc.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Rgb24 => *b"RGB3",
        }
    }

    /// Parses a V4L2 fourcc.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"RGB3" => Some(PixelFormat::Rgb24),
            _ => None,
        }
    }

    /// Bytes per pixel for packed formats, `None` for compressed ones.
    pub fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Yuyv => Some(2),
            PixelFormat::Rgb24 => Some(3),
            PixelFormat::Mjpeg => None,
        }
    }

    /// The fourcc as text, for messages.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Mjpeg => "MJPG",
            PixelFormat::Rgb24 => "RGB3",
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The negotiated format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    /// Pixel format.
    pub pixel: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per line for packed formats (may include padding); 0 for compressed formats.
    pub stride: u32,
}

impl FrameFormat {
    /// The smallest payload a packed frame of this format can have (`stride * height`);
    /// `None` for compressed formats.
    pub fn packed_len(&self) -> Option<usize> {
        self.pixel
            .bytes_per_pixel()
            .map(|_| self.stride as usize * self.height as usize)
    }
}

/// One raw frame lent by a source: the bytes exactly as the camera produced them.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    /// Stream format.
    pub format: FrameFormat,
    /// The camera's sequence number.
    pub sequence: u64,
    /// Capture time since the start of the stream.
    pub timestamp: Duration,
    /// The driver flagged this buffer as erroneous.
    pub error_flag: bool,
    /// Payload.
    pub data: &'a [u8],
}

/// What a source did when asked for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A frame was lent to the closure.
    Frame,
    /// No frame yet: ask again at (or after) this instant.
    Wait(Instant),
    /// The source has no more frames.
    End,
}

/// Errors of frame sources.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A recording file could not be used.
    #[error(transparent)]
    Recording(#[from] recording::RecordingError),
    /// A still image could not be used.
    #[error(transparent)]
    Stills(#[from] stills::StillsError),
    /// The camera was lost: unplugged, or the driver failed it (`ENODEV`, `EIO`, ...).
    /// Sources that can reconnect retry with back-off instead of returning this for good.
    #[error("camera lost during {op}: {source}")]
    Disconnected {
        /// What was being done (an ioctl name, "open", ...).
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// No frame arrived within the dequeue timeout.
    #[error("no frame within {waited:?}")]
    Timeout {
        /// How long the source waited.
        waited: Duration,
    },
    /// A V4L2 device could not be opened or configured.
    #[error(transparent)]
    V4l2(#[from] v4l2::V4l2Error),
}

/// Sleeps until `until`, at most `max_step` at a time, so a caller polling a source sees a
/// stop request promptly. Returns at once if `until` has passed.
pub fn sleep_toward(until: Instant, max_step: Duration) {
    let now = Instant::now();
    if until > now {
        std::thread::sleep((until - now).min(max_step));
    }
}

/// A source of raw frames.
pub trait FrameSource: Send {
    /// The stream's format (fixed for the life of the source).
    fn format(&self) -> FrameFormat;

    /// The largest payload a frame can have, so buffers downstream can be sized once.
    fn max_frame_len(&self) -> usize;

    /// Lends the next frame to `consume` if one is due at `now`.
    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError>;

    /// A short description for logs and status ("recording recordings/lesion.dcrec").
    fn describe(&self) -> &str;

    /// Whether the device is there: sources that can lose their device (a supervised V4L2
    /// camera) say when it is absent or reconnecting, so the display can say so. Sources
    /// that cannot be lost are always streaming.
    fn capture_status(&self) -> v4l2::CaptureStatus {
        v4l2::CaptureStatus::Streaming
    }
}
