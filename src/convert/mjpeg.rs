//! MJPEG (one baseline JPEG per frame) to RGB with `zune-jpeg`, decoding straight into the
//! destination frame.

use std::panic::{catch_unwind, AssertUnwindSafe};

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::ConvertError;
use crate::alloc_count::{self, Bucket};
use crate::capture::PixelFormat;

/// The JPEG decoder in use and its version (as locked in `Cargo.lock`).
pub const DECODER_NAME: &str = "zune-jpeg 0.5.15";

/// How many trailing bytes may follow the EOI marker (some cameras pad frames).
const EOI_WINDOW: usize = 64;

/// The largest side a JPEG can have.
const JPEG_MAX_SIDE: u32 = u16::MAX as u32;

/// Why a JPEG frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MjpegFault {
    /// The payload does not start with a JPEG SOI marker (`FF D8`).
    #[error("not a JPEG: payload of {len} bytes does not start with an SOI marker")]
    NotJpeg {
        /// Payload length.
        len: usize,
    },
    /// No EOI marker (`FF D9`) near the end of the payload: the frame was cut short.
    #[error("truncated JPEG: no EOI marker in the last {window} of {len} bytes")]
    MissingEoi {
        /// Payload length.
        len: usize,
        /// How many trailing bytes were searched.
        window: usize,
    },
    /// The decoder reported an error (corrupt or truncated data, unsupported feature).
    #[error("{0}")]
    Decode(#[from] zune_jpeg::errors::DecodeErrors),
    /// The decoder panicked on this input (caught; the frame is dropped).
    #[error("the decoder panicked on this input")]
    Panicked,
}

/// Decodes MJPEG frames of one size into packed RGB.
///
/// The decoder runs in strict mode, so a truncated or corrupt entropy-coded segment is an
/// error instead of a frame padded with grey, and a payload without an EOI marker near its
/// end is rejected as truncated. Each call builds a short-lived `zune-jpeg`
/// decoder over the borrowed payload and decodes with `decode_into` into the caller's
/// buffer, so no output `Vec` is allocated; the decoder's internal allocations (component
/// buffers, Huffman tables) happen inside `alloc_count::scope(Bucket::Decoder, ..)`.
#[derive(Debug, Clone)]
pub struct MjpegDecoder {
    width: u32,
    height: u32,
    options: DecoderOptions,
}

impl MjpegDecoder {
    /// Prepares a decoder for `width x height` frames.
    pub fn new(width: u32, height: u32) -> Result<Self, ConvertError> {
        if width == 0 || height == 0 || width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE {
            return Err(ConvertError::InvalidSize {
                pixel: PixelFormat::Mjpeg,
                width,
                height,
                reason: "a JPEG side must be 1..=65535 pixels",
            });
        }
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_strict_mode(true)
            .set_max_width(JPEG_MAX_SIDE as usize)
            .set_max_height(JPEG_MAX_SIDE as usize);
        Ok(MjpegDecoder {
            width,
            height,
            options,
        })
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Decodes one JPEG (`data`) into `dst`, packed RGB of exactly `width * height * 3`
    /// bytes. `sequence` only labels errors.
    ///
    /// Corrupt, truncated or bit-flipped input gives an error, never a panic (a panic inside
    /// the decoder is caught and reported as [`MjpegFault::Panicked`]). A JPEG of other
    /// dimensions is [`ConvertError::MjpegDimensions`]. On error `dst` may be partly written.
    pub fn decode(
        &mut self,
        sequence: u64,
        data: &[u8],
        dst: &mut [u8],
    ) -> Result<(), ConvertError> {
        let expected_len = self.width as usize * self.height as usize * 3;
        if dst.len() != expected_len {
            return Err(ConvertError::Truncated {
                sequence,
                expected: expected_len,
                got: dst.len(),
            });
        }
        if data.len() < 2 || data[0] != 0xFF || data[1] != 0xD8 {
            return Err(ConvertError::Mjpeg {
                sequence,
                reason: MjpegFault::NotJpeg { len: data.len() },
            });
        }
        // `FF D9` cannot occur inside entropy-coded data (an `FF` there is followed by `00` or
        // a restart marker), so its presence near the end means the scan was not cut short,
        // which the decoder alone does not notice when the cut falls in the last MCU row.
        let tail = &data[data.len().saturating_sub(EOI_WINDOW)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(ConvertError::Mjpeg {
                sequence,
                reason: MjpegFault::MissingEoi {
                    len: data.len(),
                    window: tail.len(),
                },
            });
        }
        let options = self.options;
        let (want_w, want_h) = (self.width as usize, self.height as usize);
        let outcome = alloc_count::scope(Bucket::Decoder, || {
            catch_unwind(AssertUnwindSafe(
                || -> Result<Option<(usize, usize)>, MjpegFault> {
                    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
                    decoder.decode_headers()?;
                    let dims = decoder.dimensions().unwrap_or((0, 0));
                    if dims != (want_w, want_h) {
                        return Ok(Some(dims));
                    }
                    decoder.decode_into(dst)?;
                    Ok(None)
                },
            ))
        });
        match outcome {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some((got_width, got_height)))) => Err(ConvertError::MjpegDimensions {
                sequence,
                expected_width: self.width,
                expected_height: self.height,
                got_width,
                got_height,
            }),
            Ok(Err(reason)) => Err(ConvertError::Mjpeg { sequence, reason }),
            Err(_) => Err(ConvertError::Mjpeg {
                sequence,
                reason: MjpegFault::Panicked,
            }),
        }
    }
}
