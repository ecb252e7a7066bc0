//! A sink with a chosen output geometry: `[display] width`/`height` for the PNG and null
//! sinks, so a run can be composed (and checked) at a panel's size without the panel.

use super::{DisplayError, FrameSink};
use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// Wraps a sink and reports `width x height` as its output size.
pub struct SizedSink {
    inner: Box<dyn FrameSink>,
    width: u32,
    height: u32,
}

impl SizedSink {
    /// `inner` showing frames of `width x height`.
    pub fn new(inner: Box<dyn FrameSink>, width: u32, height: u32) -> SizedSink {
        SizedSink {
            inner,
            width,
            height,
        }
    }
}

impl FrameSink for SizedSink {
    fn show(
        &mut self,
        frame: &RgbFrame,
        analysis: Option<&Analysis>,
        index: u64,
    ) -> Result<(), DisplayError> {
        self.inner.show(frame, analysis, index)
    }

    fn finish(&mut self) -> Result<(), DisplayError> {
        self.inner.finish()
    }

    fn describe(&self) -> String {
        format!(
            "{} at {}x{}",
            self.inner.describe(),
            self.width,
            self.height
        )
    }

    fn output_size(&self) -> Option<(u32, u32)> {
        Some((self.width, self.height))
    }
}
