//! A headless display: writes every k-th composed frame as a PNG, keeps `latest.png`
//! current (written atomically), and at the end a contact sheet of the run.
//!
//! Encoding and file writes allocate; they are charged to [`Bucket::Output`], outside the
//! frame path's zero-allocation budget.

use std::path::{Path, PathBuf};

use image::{imageops, RgbImage};

use super::{DisplayError, FrameSink};
use crate::alloc_count::{self, Bucket};
use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// Most thumbnails on the contact sheet.
pub const SHEET_TILES: usize = 12;

/// The PNG sink.
#[derive(Debug)]
pub struct PngSink {
    dir: PathBuf,
    every: u64,
    /// Keep a thumbnail of every n-th written frame (doubles as the run grows).
    sheet_every: u64,
    thumbs: Vec<RgbImage>,
    thumb_width: u32,
    written: u64,
}

fn write_err(path: &Path) -> impl Fn(String) -> DisplayError + '_ {
    move |reason| DisplayError::Write {
        path: path.to_path_buf(),
        reason,
    }
}

/// Writes `frame` to `path` as PNG via a temporary file and a rename, so readers never see
/// a partial image.
pub fn write_png_atomic(path: &Path, frame: &RgbFrame) -> Result<(), DisplayError> {
    let tmp = path.with_extension("png.tmp");
    image::save_buffer_with_format(
        &tmp,
        frame.data(),
        frame.width(),
        frame.height(),
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| write_err(&tmp)(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(path)(e.to_string()))
}

impl PngSink {
    /// Creates `dir` if needed; keeps every `every`-th frame (at least 1).
    pub fn new(dir: &Path, every: u64) -> Result<Self, DisplayError> {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir)(e.to_string()))?;
        Ok(PngSink {
            dir: dir.to_path_buf(),
            every: every.max(1),
            sheet_every: 1,
            thumbs: Vec::with_capacity(SHEET_TILES * 2),
            thumb_width: 320,
            written: 0,
        })
    }

    /// Frames written as numbered PNGs so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn keep(&mut self, frame: &RgbFrame, index: u64) -> Result<(), DisplayError> {
        let path = self.dir.join(format!("frame-{index:06}.png"));
        write_png_atomic(&path, frame)?;
        write_png_atomic(&self.dir.join("latest.png"), frame)?;
        self.written += 1;
        if (self.written - 1) % self.sheet_every != 0 {
            return Ok(());
        }
        if let Some(img) = RgbImage::from_raw(frame.width(), frame.height(), frame.data().to_vec())
        {
            let h = (frame.height() as u64 * self.thumb_width as u64 / frame.width().max(1) as u64)
                as u32;
            self.thumbs
                .push(imageops::thumbnail(&img, self.thumb_width, h.max(1)));
            if self.thumbs.len() >= SHEET_TILES * 2 {
                // Keep every other thumbnail: the sheet spans the whole run.
                let mut i = 0;
                self.thumbs.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.sheet_every *= 2;
            }
        }
        Ok(())
    }

    fn contact_sheet(&self) -> Result<(), DisplayError> {
        let Some(first) = self.thumbs.first() else {
            return Ok(());
        };
        let (tw, th) = first.dimensions();
        let cols = 4u32;
        let rows = (self.thumbs.len() as u32).div_ceil(cols);
        let gap = 4;
        let mut sheet = RgbImage::from_pixel(
            cols * (tw + gap) + gap,
            rows * (th + gap) + gap,
            image::Rgb([24, 24, 24]),
        );
        for (i, t) in self.thumbs.iter().enumerate() {
            let (c, r) = (i as u32 % cols, i as u32 / cols);
            imageops::replace(
                &mut sheet,
                t,
                (gap + c * (tw + gap)) as i64,
                (gap + r * (th + gap)) as i64,
            );
        }
        let path = self.dir.join("contact-sheet.png");
        sheet
            .save(&path)
            .map_err(|e| write_err(&path)(e.to_string()))
    }
}

impl FrameSink for PngSink {
    fn show(
        &mut self,
        frame: &RgbFrame,
        _: Option<&Analysis>,
        index: u64,
    ) -> Result<(), DisplayError> {
        if index % self.every != 0 {
            return Ok(());
        }
        alloc_count::scope(Bucket::Output, || self.keep(frame, index))
    }

    fn finish(&mut self) -> Result<(), DisplayError> {
        alloc_count::scope(Bucket::Output, || self.contact_sheet())
    }

    fn describe(&self) -> String {
        format!(
            "PNG files in {} (every {} frames)",
            self.dir.display(),
            self.every
        )
    }
}
