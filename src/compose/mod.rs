//! Composition: the newest frame, the newest heatmap blended over the analysed crop, and the
//! overlay drawn on top, into one output frame allocated at start-up.
//!
//! The output frame has the display's size. When it equals the camera frame's size the frame
//! is copied, blended and drawn on in place. Otherwise the frame is blended at camera
//! resolution into a scratch frame, fitted into the display (aspect kept, black bars) by a
//! [`scale::Scaler`] whose tables are built once ([`Composer::prepare`]), and the overlay is
//! drawn at display resolution, so text stays legible on small panels and sharp on big ones.

pub mod canvas;
pub mod overlay;
pub mod scale;

use std::sync::Mutex;

use crate::frame::RgbFrame;
use crate::heatmap::{blend_into, HeatmapError};
use crate::model::Label;
use crate::pipeline::Analysis;

pub use canvas::RgbCanvas;
pub use overlay::{draw_overlay, effective_state, Finding, OverlayInfo, ScreenState, DISCLAIMER};

/// Errors composing a frame.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The output frame or the input has no pixels.
    #[error("cannot compose a {in_w}x{in_h} frame into a {out_w}x{out_h} output")]
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
    /// Scaling to the display failed (a bug: buffers are sized together).
    #[error(transparent)]
    Scale(#[from] scale::ScaleError),
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
#[derive(Debug)]
pub struct Composer {
    labels: Vec<Label>,
    opacity: f32,
    low_confidence: f32,
    /// Tables and scratch for a display of another size than the frame (built by
    /// [`Composer::prepare`], or on the first frame of a new geometry).
    fitted: Mutex<Option<Box<Fitted>>>,
}

impl Clone for Composer {
    fn clone(&self) -> Self {
        Composer::new(self.labels.clone(), self.opacity, self.low_confidence)
    }
}

/// What composing into a display of another size needs.
#[derive(Debug)]
struct Fitted {
    fit: scale::Fit,
    scaler: scale::Scaler,
    /// The frame with the heatmap blended, at camera resolution.
    scratch: RgbFrame,
}

impl Fitted {
    fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Fitted {
        let fit = scale::Fit::new(src_w, src_h, dst_w, dst_h);
        Fitted {
            fit,
            scaler: scale::Scaler::new(src_w, src_h, fit.rect.width, fit.rect.height),
            scratch: RgbFrame::new(src_w, src_h),
        }
    }

    fn matches(&self, src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> bool {
        (
            self.fit.src_w,
            self.fit.src_h,
            self.fit.dst_w,
            self.fit.dst_h,
        ) == (src_w, src_h, dst_w, dst_h)
    }
}

/// Fills `out` black outside `r` (the letterbox bars).
fn fill_bars(out: &mut RgbFrame, r: scale::Fit) {
    let stride = out.stride();
    let data = out.data_mut();
    let (x0, x1) = (
        r.rect.x as usize * 3,
        (r.rect.x + r.rect.width) as usize * 3,
    );
    let (y0, y1) = (r.rect.y as usize, (r.rect.y + r.rect.height) as usize);
    for (y, row) in data.chunks_exact_mut(stride).enumerate() {
        if y < y0 || y >= y1 {
            row.fill(0);
        } else {
            row[..x0].fill(0);
            row[x1..].fill(0);
        }
    }
}

impl Composer {
    /// A composer for a model's labels; `opacity` is the heatmap's weight (0..=1) and
    /// `low_confidence` the probability below which a result is marked.
    pub fn new(labels: Vec<Label>, opacity: f32, low_confidence: f32) -> Self {
        Composer {
            labels,
            opacity: opacity.clamp(0.0, 1.0),
            low_confidence,
            fitted: Mutex::new(None),
        }
    }

    /// Sizes the tables and scratch for composing `frame_w x frame_h` frames onto a
    /// `display_w x display_h` display (nothing is needed when the sizes are equal). Call it
    /// at start-up: composing a new geometry without it allocates on that first frame.
    pub fn prepare(&self, frame_w: u32, frame_h: u32, display_w: u32, display_h: u32) {
        if (frame_w, frame_h) == (display_w, display_h) {
            return;
        }
        let mut fitted = self.fitted.lock().unwrap_or_else(|p| p.into_inner());
        if !fitted
            .as_ref()
            .is_some_and(|f| f.matches(frame_w, frame_h, display_w, display_h))
        {
            *fitted = Some(Box::new(Fitted::new(
                frame_w, frame_h, display_w, display_h,
            )));
        }
    }

    /// Where a `frame_w x frame_h` frame lands on a `display_w x display_h` display.
    pub fn fit(frame_w: u32, frame_h: u32, display_w: u32, display_h: u32) -> scale::Fit {
        scale::Fit::new(frame_w, frame_h, display_w, display_h)
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
        let same_size = (out.width(), out.height()) == (frame.width(), frame.height());
        let (w, h) = (out.width(), out.height());
        if w == 0 || h == 0 || frame.width() == 0 || frame.height() == 0 {
            return Err(ComposeError::Size {
                out_w: w,
                out_h: h,
                in_w: frame.width(),
                in_h: frame.height(),
            });
        }
        let mut crop = crate::preprocess::CropRect {
            x: 0,
            y: 0,
            width: 0,
            height: 0,
        };
        if same_size {
            out.copy_from(frame);
            let stride = out.stride();
            if let Some(a) = analysis {
                blend_into(out.data_mut(), stride, a.crop, &a.heat_rgb, self.opacity)?;
                crop = a.crop;
            }
        } else {
            self.prepare(frame.width(), frame.height(), w, h);
            let mut guard = self.fitted.lock().unwrap_or_else(|p| p.into_inner());
            let Some(fitted) = guard.as_deref_mut() else {
                return Err(ComposeError::Size {
                    out_w: w,
                    out_h: h,
                    in_w: frame.width(),
                    in_h: frame.height(),
                });
            };
            let Fitted {
                fit,
                scaler,
                scratch,
            } = fitted;
            let src = match analysis {
                Some(a) => {
                    scratch.copy_from(frame);
                    let stride = scratch.stride();
                    blend_into(
                        scratch.data_mut(),
                        stride,
                        a.crop,
                        &a.heat_rgb,
                        self.opacity,
                    )?;
                    crop = fit.map_rect(a.crop);
                    &*scratch
                }
                None => frame,
            };
            fill_bars(out, *fit);
            let stride = out.stride();
            scaler.run(
                src.data(),
                src.stride(),
                out.data_mut(),
                stride,
                fit.rect.x as usize,
                fit.rect.y as usize,
            )?;
            out.sequence = frame.sequence;
            out.timestamp = frame.timestamp;
        }
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
