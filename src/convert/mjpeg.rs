//! MJPEG (one baseline JPEG per frame) to RGB, decoding straight into the destination frame,
//! with libjpeg-turbo (the decoder the default model was trained with, see [`super::libjpeg`])
//! or `zune-jpeg` (pure Rust, always available).

use std::panic::{catch_unwind, AssertUnwindSafe};

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::libjpeg::{LibjpegError, TurboDecoder};
use super::ConvertError;
use crate::alloc_count::{self, Bucket};
use crate::capture::PixelFormat;

/// The pure-Rust JPEG decoder and its version (as locked in `Cargo.lock`).
pub const DECODER_NAME: &str = "zune-jpeg 0.5.15";

/// The name libjpeg-turbo is reported under.
pub const LIBJPEG_DECODER_NAME: &str = "libjpeg-turbo (libturbojpeg.so.0)";

/// Which JPEG decoder to use (`jpeg_decoder` in `[source]`, `--jpeg-decoder` on the command
/// line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JpegDecoderChoice {
    /// libjpeg-turbo when `libturbojpeg.so.0` loads, otherwise `zune-jpeg` (logged once).
    #[default]
    Auto,
    /// libjpeg-turbo, or an error naming the missing library.
    LibjpegTurbo,
    /// `zune-jpeg`.
    ZuneJpeg,
}

impl std::str::FromStr for JpegDecoderChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(JpegDecoderChoice::Auto),
            "libjpeg-turbo" => Ok(JpegDecoderChoice::LibjpegTurbo),
            "zune-jpeg" => Ok(JpegDecoderChoice::ZuneJpeg),
            other => Err(format!(
                "unknown JPEG decoder {other:?} (auto, libjpeg-turbo or zune-jpeg)"
            )),
        }
    }
}

/// One JPEG decoding backend, built for one stream.
#[derive(Debug)]
enum Backend {
    Libjpeg(TurboDecoder),
    Zune(DecoderOptions),
}

impl Backend {
    fn new(choice: JpegDecoderChoice) -> Result<Self, LibjpegError> {
        let zune = || {
            Backend::Zune(
                DecoderOptions::default()
                    .jpeg_set_out_colorspace(ColorSpace::RGB)
                    .set_strict_mode(true)
                    .set_max_width(JPEG_MAX_SIDE as usize)
                    .set_max_height(JPEG_MAX_SIDE as usize),
            )
        };
        match choice {
            JpegDecoderChoice::ZuneJpeg => Ok(zune()),
            JpegDecoderChoice::LibjpegTurbo => Ok(Backend::Libjpeg(TurboDecoder::new()?)),
            JpegDecoderChoice::Auto => match TurboDecoder::new() {
                Ok(d) => Ok(Backend::Libjpeg(d)),
                Err(e) => {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    WARNED.call_once(|| {
                        log::warn!(
                            "{e}; decoding JPEG with {DECODER_NAME}, whose pixels differ from \
                             the training decoder's by a grey level or two"
                        )
                    });
                    Ok(zune())
                }
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Libjpeg(_) => LIBJPEG_DECODER_NAME,
            Backend::Zune(_) => DECODER_NAME,
        }
    }
}

/// The name of the decoder `choice` resolves to on this machine (`Auto`: libjpeg-turbo if it
/// loads). An explicit choice is reported as is, even if it cannot load.
pub fn resolved_jpeg_decoder_name(choice: JpegDecoderChoice) -> &'static str {
    match choice {
        JpegDecoderChoice::ZuneJpeg => DECODER_NAME,
        JpegDecoderChoice::LibjpegTurbo => LIBJPEG_DECODER_NAME,
        JpegDecoderChoice::Auto if super::libjpeg::available() => LIBJPEG_DECODER_NAME,
        JpegDecoderChoice::Auto => DECODER_NAME,
    }
}

/// Decodes a whole JPEG file's bytes into a new packed RGB buffer (stills, `dermcam infer`);
/// returns width, height and the pixels. `what` names the input in errors.
pub fn decode_jpeg_to_vec(
    data: &[u8],
    choice: JpegDecoderChoice,
) -> Result<(u32, u32, Vec<u8>), MjpegFault> {
    let mut backend = Backend::new(choice)?;
    // One decoder per file: the header read for the size is the one the decode continues from.
    let mut rgb = Vec::new();
    let (w, h) = match &mut backend {
        Backend::Libjpeg(d) => {
            let (w, h) = d.dimensions(data)?;
            rgb = vec![0u8; w * h * 3];
            d.decode_into(data, &mut rgb, w, h)?;
            (w, h)
        }
        Backend::Zune(options) => {
            let options = *options;
            catch_unwind(AssertUnwindSafe(
                || -> Result<(usize, usize), MjpegFault> {
                    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
                    decoder.decode_headers()?;
                    let (w, h) = decoder.dimensions().unwrap_or((0, 0));
                    if w > 0 && h > 0 {
                        rgb = vec![0u8; w * h * 3];
                        decoder.decode_into(&mut rgb)?;
                    }
                    Ok((w, h))
                },
            ))
            .map_err(|_| MjpegFault::Panicked)??
        }
    };
    if w == 0 || h == 0 {
        return Err(MjpegFault::NotJpeg { len: data.len() });
    }
    let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(MjpegFault::Libjpeg(LibjpegError::TooLarge(w * h * 3)));
    };
    Ok((w32, h32, rgb))
}

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
    /// libjpeg-turbo rejected the data, or could not be loaded when asked for.
    #[error(transparent)]
    Libjpeg(#[from] LibjpegError),
}

/// Decodes MJPEG frames of one size into packed RGB.
///
/// Both backends run strict, so a truncated or corrupt entropy-coded segment is an error
/// instead of a frame padded with grey, and a payload without an EOI marker near its end is
/// rejected as truncated. Decoding writes straight into the caller's buffer, so no output
/// `Vec` is allocated. libjpeg-turbo keeps one decompressor for the stream (its working
/// memory is C `malloc`, invisible to the counting allocator); `zune-jpeg` builds a
/// short-lived decoder over the borrowed payload per frame, whose internal allocations
/// (component buffers, Huffman tables) happen inside `alloc_count::scope(Bucket::Decoder, ..)`.
#[derive(Debug)]
pub struct MjpegDecoder {
    width: u32,
    height: u32,
    backend: Backend,
}

impl MjpegDecoder {
    /// Prepares a decoder for `width x height` frames with the default choice
    /// ([`JpegDecoderChoice::Auto`]).
    pub fn new(width: u32, height: u32) -> Result<Self, ConvertError> {
        Self::with_choice(width, height, JpegDecoderChoice::Auto)
    }

    /// Prepares a decoder for `width x height` frames with the chosen backend.
    pub fn with_choice(
        width: u32,
        height: u32,
        choice: JpegDecoderChoice,
    ) -> Result<Self, ConvertError> {
        if width == 0 || height == 0 || width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE {
            return Err(ConvertError::InvalidSize {
                pixel: PixelFormat::Mjpeg,
                width,
                height,
                reason: "a JPEG side must be 1..=65535 pixels",
            });
        }
        let backend = Backend::new(choice)?;
        Ok(MjpegDecoder {
            width,
            height,
            backend,
        })
    }

    /// The backend's name (for logs, `bench` and `infer --json`).
    pub fn name(&self) -> &'static str {
        self.backend.name()
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
        let (want_w, want_h) = (self.width as usize, self.height as usize);
        let backend = &mut self.backend;
        let outcome = alloc_count::scope(Bucket::Decoder, || {
            catch_unwind(AssertUnwindSafe(
                || -> Result<Option<(usize, usize)>, MjpegFault> {
                    // One decoder per frame: the header read for the size check is the one
                    // the decode continues from.
                    match backend {
                        Backend::Libjpeg(d) => {
                            let dims = d.dimensions(data)?;
                            if dims != (want_w, want_h) {
                                return Ok(Some(dims));
                            }
                            d.decode_into(data, dst, want_w, want_h)?;
                        }
                        Backend::Zune(options) => {
                            let mut decoder =
                                JpegDecoder::new_with_options(ZCursor::new(data), *options);
                            decoder.decode_headers()?;
                            let dims = decoder.dimensions().unwrap_or((0, 0));
                            if dims != (want_w, want_h) {
                                return Ok(Some(dims));
                            }
                            decoder.decode_into(dst)?;
                        }
                    }
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
