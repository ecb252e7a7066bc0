//! A folder (or list) of still images replayed as RGB24 frames.
//!
//! All images are decoded when the source opens (at most [`MAX_STILLS`]), so replay lends
//! frames without decoding or allocating. They must share one size: a frame source has one
//! format for its whole life.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CaptureError, FrameFormat, FrameSource, PixelFormat, Poll, RawFrame};
use crate::convert::{decode_jpeg_to_vec, JpegDecoderChoice};

/// Most images a stills source holds.
pub const MAX_STILLS: usize = 512;

/// Errors of the stills source.
#[derive(Debug, thiserror::Error)]
pub enum StillsError {
    /// The folder could not be listed.
    #[error("cannot list images in {path}: {source}")]
    List {
        /// Folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file is not a readable image.
    #[error("{path} is not a readable image: {reason}")]
    Decode {
        /// File.
        path: PathBuf,
        /// Decoder message.
        reason: String,
    },
    /// Images of different sizes.
    #[error("{path} is {width}x{height}, but the first image {first} is {first_width}x{first_height}: a stills source needs one size")]
    SizeMismatch {
        /// File.
        path: PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// First file.
        first: PathBuf,
        /// First width.
        first_width: u32,
        /// First height.
        first_height: u32,
    },
    /// No images found.
    #[error("no JPEG or PNG images in {path}")]
    Empty {
        /// Folder.
        path: PathBuf,
    },
    /// Too many images.
    #[error("{path} holds more than {MAX_STILLS} images")]
    TooMany {
        /// Folder.
        path: PathBuf,
    },
}

/// Decodes an image file to packed RGB8, naming the file in the error. JPEG files are
/// decoded with the default JPEG decoder choice (libjpeg-turbo when present, as the
/// training pipeline did; see [`crate::convert::libjpeg`]).
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, StillsError> {
    load_rgb_with(path, JpegDecoderChoice::Auto)
}

/// [`load_rgb`] with an explicit JPEG decoder.
pub fn load_rgb_with(path: &Path, jpeg: JpegDecoderChoice) -> Result<image::RgbImage, StillsError> {
    let decode_err = |reason: String| StillsError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        let bytes = std::fs::read(path).map_err(|e| decode_err(e.to_string()))?;
        let (w, h, rgb) =
            decode_jpeg_to_vec(&bytes, jpeg).map_err(|e| decode_err(e.to_string()))?;
        return image::RgbImage::from_raw(w, h, rgb)
            .ok_or_else(|| decode_err("decoded buffer has the wrong length".into()));
    }
    let img = reader.decode().map_err(|e| decode_err(e.to_string()))?;
    Ok(img.to_rgb8())
}

/// Whether a path has a JPEG extension.
pub fn is_jpeg_path(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("jpg" | "jpeg")
    )
}

/// Whether a path looks like an image dermcam reads.
pub fn is_image_path(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

/// A stills source.
#[derive(Debug)]
pub struct Stills {
    describe: String,
    format: FrameFormat,
    images: Vec<(PathBuf, Vec<u8>)>,
    period: Duration,
    looped: bool,
    next: usize,
    pass: u64,
}

impl Stills {
    /// Opens a folder (its JPEG/PNG files in name order) or a single image, decoding JPEGs
    /// with the default decoder choice.
    pub fn open(path: &Path, period: Duration, looped: bool) -> Result<Self, StillsError> {
        Self::open_with(path, period, looped, JpegDecoderChoice::Auto)
    }

    /// [`Stills::open`] with an explicit JPEG decoder.
    pub fn open_with(
        path: &Path,
        period: Duration,
        looped: bool,
        jpeg: JpegDecoderChoice,
    ) -> Result<Self, StillsError> {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| StillsError::List {
                    path: path.to_path_buf(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image_path(p))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        Self::from_files_with(path, &files, period, looped, jpeg)
    }

    /// Opens a list of image files.
    pub fn from_files(
        name: &Path,
        files: &[PathBuf],
        period: Duration,
        looped: bool,
    ) -> Result<Self, StillsError> {
        Self::from_files_with(name, files, period, looped, JpegDecoderChoice::Auto)
    }

    /// [`Stills::from_files`] with an explicit JPEG decoder.
    pub fn from_files_with(
        name: &Path,
        files: &[PathBuf],
        period: Duration,
        looped: bool,
        jpeg: JpegDecoderChoice,
    ) -> Result<Self, StillsError> {
        if files.is_empty() {
            return Err(StillsError::Empty {
                path: name.to_path_buf(),
            });
        }
        if files.len() > MAX_STILLS {
            return Err(StillsError::TooMany {
                path: name.to_path_buf(),
            });
        }
        let mut images = Vec::with_capacity(files.len());
        let mut size = None;
        for f in files {
            let img = load_rgb_with(f, jpeg)?;
            let (w, h) = img.dimensions();
            match size {
                None => size = Some((w, h, f.clone())),
                Some((fw, fh, ref first)) if (fw, fh) != (w, h) => {
                    return Err(StillsError::SizeMismatch {
                        path: f.clone(),
                        width: w,
                        height: h,
                        first: first.clone(),
                        first_width: fw,
                        first_height: fh,
                    })
                }
                Some(_) => {}
            }
            images.push((f.clone(), img.into_raw()));
        }
        let (width, height, _) = size.ok_or_else(|| StillsError::Empty {
            path: name.to_path_buf(),
        })?;
        Ok(Stills {
            describe: format!(
                "stills {} ({} images {width}x{height})",
                name.display(),
                images.len()
            ),
            format: FrameFormat {
                pixel: PixelFormat::Rgb24,
                width,
                height,
                stride: width * 3,
            },
            images,
            period,
            looped,
            next: 0,
            pass: 0,
        })
    }

    /// The file of frame `index`.
    pub fn file(&self, index: usize) -> Option<&Path> {
        self.images.get(index).map(|(p, _)| p.as_path())
    }
}

impl FrameSource for Stills {
    fn format(&self) -> FrameFormat {
        self.format
    }

    fn max_frame_len(&self) -> usize {
        self.format.stride as usize * self.format.height as usize
    }

    fn poll_frame(
        &mut self,
        _now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        if self.next == self.images.len() {
            if !self.looped {
                return Ok(Poll::End);
            }
            self.next = 0;
            self.pass += 1;
        }
        let index = self.pass * self.images.len() as u64 + self.next as u64;
        let (_, data) = &self.images[self.next];
        self.next += 1;
        consume(RawFrame {
            format: self.format,
            sequence: index,
            timestamp: self.period * index as u32,
            error_flag: false,
            data,
        });
        Ok(Poll::Frame)
    }

    fn describe(&self) -> &str {
        &self.describe
    }
}
