//! Pixel conversion from camera formats to RGB.
//!
//! A [`Converter`] is built once for the stream's negotiated [`FrameFormat`] and then turns
//! every [`RawFrame`] into a pooled [`RgbFrame`] without allocating. The per-format kernels
//! live in [`yuyv`], [`rgb`] and [`mjpeg`].

pub mod libjpeg;
pub mod mjpeg;
pub mod rgb;
pub mod yuyv;

use crate::capture::{FrameFormat, PixelFormat, RawFrame};
use crate::frame::RgbFrame;

pub use mjpeg::{
    decode_jpeg_to_vec, resolved_jpeg_decoder_name, JpegDecoderChoice, MjpegDecoder, MjpegFault,
    DECODER_NAME, LIBJPEG_DECODER_NAME,
};

/// Errors of pixel conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The frame format has a zero or too large dimension.
    #[error("{pixel} frame size {width}x{height} is unusable: {reason}")]
    InvalidSize {
        /// Pixel format.
        pixel: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stride of a packed format is shorter than one row of pixels.
    #[error("{pixel} stride {stride} bytes is shorter than a row of {width} pixels ({min} bytes)")]
    StrideTooSmall {
        /// Pixel format.
        pixel: PixelFormat,
        /// Configured bytes per line.
        stride: u32,
        /// Width in pixels.
        width: u32,
        /// The smallest valid stride (`width * bytes_per_pixel`).
        min: usize,
    },
    /// YUYV carries chroma per pixel pair, so the width must be even.
    #[error("YUYV width {width} is odd (chroma is shared by pixel pairs)")]
    OddWidth {
        /// Width in pixels.
        width: u32,
    },
    /// A raw frame's format differs from the one the converter was built for.
    #[error("frame {sequence} has format {got:?}, the converter was built for {expected:?}")]
    FormatMismatch {
        /// Sequence number of the frame.
        sequence: u64,
        /// Format given to [`Converter::new`].
        expected: FrameFormat,
        /// Format of the frame.
        got: FrameFormat,
    },
    /// A packed frame's payload is shorter than `stride * height`.
    #[error(
        "frame {sequence} payload is {got} bytes, expected at least {expected} (stride x height)"
    )]
    Truncated {
        /// Sequence number of the frame.
        sequence: u64,
        /// `stride * height`.
        expected: usize,
        /// Payload length.
        got: usize,
    },
    /// The destination frame's size differs from the stream's.
    #[error(
        "destination frame is {got_width}x{got_height}, the stream is {expected_width}x{expected_height}"
    )]
    SizeMismatch {
        /// Stream width.
        expected_width: u32,
        /// Stream height.
        expected_height: u32,
        /// Destination width.
        got_width: u32,
        /// Destination height.
        got_height: u32,
    },
    /// A JPEG could not be decoded (corrupt, truncated, unsupported).
    #[error("frame {sequence}: bad MJPEG frame: {reason}")]
    Mjpeg {
        /// Sequence number of the frame (0 when decoding outside a stream).
        sequence: u64,
        /// What the decoder reported.
        reason: MjpegFault,
    },
    /// The chosen JPEG decoder cannot be used on this machine.
    #[error(transparent)]
    JpegDecoder(#[from] libjpeg::LibjpegError),
    /// A JPEG decoded fine but has other dimensions than the stream.
    #[error(
        "frame {sequence}: JPEG is {got_width}x{got_height}, the stream is {expected_width}x{expected_height}"
    )]
    MjpegDimensions {
        /// Sequence number of the frame.
        sequence: u64,
        /// Stream width.
        expected_width: u32,
        /// Stream height.
        expected_height: u32,
        /// Width in the JPEG header.
        got_width: usize,
        /// Height in the JPEG header.
        got_height: usize,
    },
}

/// The per-format part of a [`Converter`].
#[derive(Debug)]
enum Kind {
    Yuyv,
    Rgb24,
    Mjpeg(MjpegDecoder),
}

/// Converts raw frames of one negotiated format into packed RGB frames.
///
/// Everything is validated and allocated in [`Converter::new`]; [`Converter::convert`] does
/// not allocate (the MJPEG decoder's own allocations are charged to
/// [`Bucket::Decoder`](crate::alloc_count::Bucket::Decoder)).
#[derive(Debug)]
pub struct Converter {
    format: FrameFormat,
    kind: Kind,
}

impl Converter {
    /// Builds a converter for `format`.
    ///
    /// Checks that the size is non-zero, that a packed format's stride holds a row
    /// (`stride >= width * bytes_per_pixel`), that YUYV's width is even and that an MJPEG
    /// stream fits in a JPEG (at most 65535 pixels a side). The stride of MJPEG is ignored.
    pub fn new(format: FrameFormat) -> Result<Self, ConvertError> {
        Self::with_jpeg(format, JpegDecoderChoice::Auto)
    }

    /// Builds a converter for `format`, decoding MJPEG with the chosen JPEG decoder (see
    /// [`JpegDecoderChoice`]).
    pub fn with_jpeg(format: FrameFormat, jpeg: JpegDecoderChoice) -> Result<Self, ConvertError> {
        let FrameFormat {
            pixel,
            width,
            height,
            stride,
        } = format;
        if width == 0 || height == 0 {
            return Err(ConvertError::InvalidSize {
                pixel,
                width,
                height,
                reason: "zero width or height",
            });
        }
        let kind = match pixel {
            PixelFormat::Yuyv | PixelFormat::Rgb24 => {
                let bpp = pixel.bytes_per_pixel().unwrap_or(1);
                let min = (width as usize)
                    .checked_mul(bpp)
                    .ok_or(ConvertError::InvalidSize {
                        pixel,
                        width,
                        height,
                        reason: "row length overflows",
                    })?;
                if (stride as usize) < min {
                    return Err(ConvertError::StrideTooSmall {
                        pixel,
                        stride,
                        width,
                        min,
                    });
                }
                if (stride as usize).checked_mul(height as usize).is_none() {
                    return Err(ConvertError::InvalidSize {
                        pixel,
                        width,
                        height,
                        reason: "frame length overflows",
                    });
                }
                if pixel == PixelFormat::Yuyv {
                    if width % 2 != 0 {
                        return Err(ConvertError::OddWidth { width });
                    }
                    Kind::Yuyv
                } else {
                    Kind::Rgb24
                }
            }
            PixelFormat::Mjpeg => Kind::Mjpeg(MjpegDecoder::with_choice(width, height, jpeg)?),
        };
        Ok(Converter { format, kind })
    }

    /// The JPEG decoder in use (`None` for formats that are not JPEG).
    pub fn jpeg_decoder_name(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Mjpeg(d) => Some(d.name()),
            _ => None,
        }
    }

    /// The format this converter was built for.
    pub fn format(&self) -> FrameFormat {
        self.format
    }

    /// Converts `raw` into `dst` and copies its sequence number and timestamp.
    ///
    /// Fails (leaving `dst`'s metadata untouched, its pixels possibly partly written for
    /// MJPEG) if the frame's format is not the configured one, a packed payload is shorter
    /// than `stride * height`, `dst` has another size, or a JPEG is corrupt, truncated or of
    /// other dimensions. The driver's `error_flag` is not looked at: that policy is the
    /// caller's.
    pub fn convert(&mut self, raw: &RawFrame<'_>, dst: &mut RgbFrame) -> Result<(), ConvertError> {
        let f = self.format;
        if raw.format != f {
            return Err(ConvertError::FormatMismatch {
                sequence: raw.sequence,
                expected: f,
                got: raw.format,
            });
        }
        if dst.width() != f.width || dst.height() != f.height {
            return Err(ConvertError::SizeMismatch {
                expected_width: f.width,
                expected_height: f.height,
                got_width: dst.width(),
                got_height: dst.height(),
            });
        }
        let (w, h, stride) = (f.width as usize, f.height as usize, f.stride as usize);
        match &mut self.kind {
            Kind::Yuyv | Kind::Rgb24 => {
                let expected = stride * h;
                if raw.data.len() < expected {
                    return Err(ConvertError::Truncated {
                        sequence: raw.sequence,
                        expected,
                        got: raw.data.len(),
                    });
                }
                if matches!(self.kind, Kind::Yuyv) {
                    yuyv::yuyv_to_rgb(raw.data, w, h, stride, dst.data_mut());
                } else {
                    rgb::rgb24_to_rgb(raw.data, w, h, stride, dst.data_mut());
                }
            }
            Kind::Mjpeg(decoder) => decoder.decode(raw.sequence, raw.data, dst.data_mut())?,
        }
        dst.sequence = raw.sequence;
        dst.timestamp = raw.timestamp;
        Ok(())
    }
}
