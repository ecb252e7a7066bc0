//! Stage probes: how benchmarks and tests observe each stage of a frame without the
//! pipeline reading clocks or counters itself.

/// The stages of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Raw camera bytes to RGB.
    Convert,
    /// Crop, resize, normalise into the input tensor.
    Preprocess,
    /// The model run (tract).
    Inference,
    /// Head backprop, channel weights, weighted sum, ReLU, normalisation.
    GradCam,
    /// Upsampling to the crop and the colour map.
    Heatmap,
    /// Copy, blend and overlay drawing.
    Compose,
}

impl Stage {
    /// All stages in order.
    pub const ALL: [Stage; 6] = [
        Stage::Convert,
        Stage::Preprocess,
        Stage::Inference,
        Stage::GradCam,
        Stage::Heatmap,
        Stage::Compose,
    ];

    /// Name used in reports (`dermcam bench --json` `stages` keys).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Convert => "convert",
            Stage::Preprocess => "preprocess",
            Stage::Inference => "inference",
            Stage::GradCam => "gradcam",
            Stage::Heatmap => "heatmap",
            Stage::Compose => "compose",
        }
    }
}

/// Observes stage boundaries.
pub trait StageProbe {
    /// A stage starts.
    fn begin(&mut self, stage: Stage);
    /// A stage ends.
    fn end(&mut self, stage: Stage);
}

/// A probe that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProbe;

impl StageProbe for NoProbe {
    fn begin(&mut self, _stage: Stage) {}
    fn end(&mut self, _stage: Stage) {}
}
