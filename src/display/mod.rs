//! Where composed frames go: a headless PNG sink here; framebuffer, DRM and SPI panels plug
//! in behind the same trait.

pub mod console;
pub mod drm;
pub mod fbdev;
pub mod pack;
pub mod png;
pub mod sized;
pub mod spi;

use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// Errors of displays and sinks.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// Writing an output file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        reason: String,
    },
    /// An SPI panel (`[display.spi]`) failed.
    #[error(transparent)]
    Panel(#[from] spi::PanelError),
    /// The framebuffer display failed.
    #[error(transparent)]
    Fbdev(#[from] fbdev::FbdevError),
    /// The DRM display failed.
    #[error(transparent)]
    Drm(#[from] drm::DrmError),
}

/// A consumer of composed frames.
pub trait FrameSink: Send {
    /// Shows (or stores) composed frame number `index`; `analysis` is the one it shows.
    fn show(
        &mut self,
        frame: &RgbFrame,
        analysis: Option<&Analysis>,
        index: u64,
    ) -> Result<(), DisplayError>;

    /// Called once after the last frame.
    fn finish(&mut self) -> Result<(), DisplayError> {
        Ok(())
    }

    /// A short description for logs.
    fn describe(&self) -> String;

    /// The size of the frames this sink shows, when it has one of its own (a screen or a
    /// panel); `None` = the camera frame's size. The composer composes at this size.
    fn output_size(&self) -> Option<(u32, u32)> {
        None
    }
}

/// A sink that keeps only a count (benchmarks, tests).
#[derive(Debug, Default)]
pub struct NullSink {
    /// Frames shown.
    pub frames: u64,
}

impl FrameSink for NullSink {
    fn show(&mut self, _: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        self.frames += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        "null sink".into()
    }
}
