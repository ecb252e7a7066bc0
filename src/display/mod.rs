//! Where composed frames go: a headless PNG sink here; framebuffer, DRM and SPI panels plug
//! in behind the same trait.

pub mod png;

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
