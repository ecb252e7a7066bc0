//! Composition: the newest frame, the newest heatmap blended over the analysed crop, and the
//! overlay drawn on top, into one output frame allocated at start-up.

pub mod canvas;
pub mod overlay;

use crate::frame::RgbFrame;
use crate::heatmap::{blend_into, HeatmapError};
use crate::model::Label;
use crate::pipeline::Analysis;

pub use canvas::RgbCanvas;
pub use overlay::{draw_overlay, effective_state, Finding, OverlayInfo, ScreenState, DISCLAIMER};

/// Errors composing a frame.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The output frame and the input differ in size.
    #[error("output frame is {out_w}x{out_h} but the frame is {in_w}x{in_h}")]
    Size {
        /// Output width.
        out_w: u32,
        /// Output height.
        out_h: u32,
        /// Input width.
        in_w: u32,
        /// Input height.
        in_h: u32,
    },
    /// Blending failed (heatmap of the wrong size).
    #[error(transparent)]
    Blend(#[from] HeatmapError),
}

/// Rates shown on the overlay.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Displayed frames per second.
    pub display_fps: f32,
    /// Model runs per second.
    pub inference_fps: f32,
}

/// Composes output frames.
#[derive(Debug, Clone)]
pub struct Composer {
    labels: Vec<Label>,
    opacity: f32,
    low_confidence: f32,
}

impl Composer {
    /// A composer for a model's labels; `opacity` is the heatmap's weight (0..=1) and
    /// `low_confidence` the probability below which a result is marked.
    pub fn new(labels: Vec<Label>, opacity: f32, low_confidence: f32) -> Self {
        Composer {
            labels,
            opacity: opacity.clamp(0.0, 1.0),
            low_confidence,
        }
    }

    /// Heatmap opacity.
    pub fn opacity(&self) -> f32 {
        self.opacity
    }

    /// Sets the heatmap opacity (clamped to 0..=1).
    pub fn set_opacity(&mut self, opacity: f32) {
        self.opacity = opacity.clamp(0.0, 1.0);
    }

    /// Low-confidence threshold.
    pub fn low_confidence(&self) -> f32 {
        self.low_confidence
    }

    /// Composes `frame` with `analysis` (if any) into `out` in the `Live` state (which shows
    /// as `LowConfidence` below the threshold). Allocates nothing.
    pub fn compose(
        &self,
        frame: &RgbFrame,
        analysis: Option<&Analysis>,
        rates: Rates,
        out: &mut RgbFrame,
    ) -> Result<(), ComposeError> {
        self.compose_with_state(frame, analysis, rates, ScreenState::Live, out)
    }

    /// Composes `frame` with `analysis` (if any) into `out`, showing `state` (`NoCamera`
    /// ignores the frame's content; `ModelError` shows no heatmap or result; `Live` becomes
    /// `LowConfidence` below the threshold). Allocates nothing.
    pub fn compose_with_state(
        &self,
        frame: &RgbFrame,
        analysis: Option<&Analysis>,
        rates: Rates,
        state: ScreenState,
        out: &mut RgbFrame,
    ) -> Result<(), ComposeError> {
        let analysis = match state {
            ScreenState::NoCamera | ScreenState::ModelError => None,
            _ => analysis,
        };
        if !out.copy_from(frame) {
            return Err(ComposeError::Size {
                out_w: out.width(),
                out_h: out.height(),
                in_w: frame.width(),
                in_h: frame.height(),
            });
        }
        let stride = out.stride();
        let (w, h) = (out.width(), out.height());
        if let Some(a) = analysis {
            blend_into(out.data_mut(), stride, a.crop, &a.heat_rgb, self.opacity)?;
        }
        let crop = analysis
            .map(|a| a.crop)
            .unwrap_or(crate::preprocess::CropRect {
                x: 0,
                y: 0,
                width: 0,
                height: 0,
            });
        let info = OverlayInfo {
            labels: &self.labels,
            finding: analysis.map(|a| Finding {
                class: a.class,
                probabilities: &a.probabilities,
            }),
            fps: rates.display_fps,
            inference_fps: rates.inference_fps,
            crop,
            low_confidence: self.low_confidence,
            state,
        };
        if let Some(mut canvas) = RgbCanvas::new(out.data_mut(), w, h) {
            let Ok(()) = draw_overlay(&mut canvas, &info);
        }
        Ok(())
    }
}
