//! The Grad-CAM engine: exact gradients of a target logit through the classifier head,
//! channel weights, the class activation map, ReLU and normalisation — all in a workspace
//! sized once from the head's shapes (GUIDE §2; pytorch-grad-cam's `GradCAM` semantics).
//!
//! tract has no autodiff; it does not need one here. The head after the target layer is a
//! short chain of ops ([`crate::model::head`]), so the gradient `∂y_c/∂A` is a few lines of
//! backprop per op. For the common head (GlobalAveragePool → Flatten → Gemm) it reduces to
//! `α_k = W[c,k] / (H·W)`.

use crate::heatmap::scale_min_max;
use crate::model::head::{Head, HeadOpKind};

/// Errors of the engine (all about mismatched buffers: the engine never allocates).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GradCamError {
    /// The activations have the wrong length.
    #[error("target layer activations have {got} values, the head expects {expected}")]
    Activations {
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The target class is out of range.
    #[error("target class {class} is out of range: the model has {classes} classes")]
    Class {
        /// Requested class.
        class: usize,
        /// Number of classes.
        classes: usize,
    },
    /// The head's recomputed logits disagree with the model's.
    #[error("the head recomputed from the ONNX graph gives logit {index} = {recomputed}, but the model computed {model} (tolerance {tolerance}): the head was not read correctly, so Grad-CAM is refused")]
    HeadMismatch {
        /// Logit index.
        index: usize,
        /// Recomputed by the engine.
        recomputed: f32,
        /// From tract.
        model: f32,
        /// Allowed difference.
        tolerance: f32,
    },
}

/// Grad-CAM workspace for one model.
#[derive(Debug)]
pub struct GradCam {
    head: Head,
    /// Input of each op i > 0 (op 0's input is the activations themselves), then the output.
    values: Vec<f32>,
    /// Gradient w.r.t. the input of each op i > 0, then w.r.t. the output.
    grads: Vec<f32>,
    /// Gradient w.r.t. the activations when an op before the pool needs it.
    grad_activations: Vec<f32>,
    /// Offsets of value/grad `i` (for i in 1..=ops.len()) in `values`/`grads`.
    offsets: Vec<usize>,
    /// Whether any backward step needs forward values.
    needs_forward: bool,
    /// Channel weights α_k.
    alpha: Vec<f32>,
    /// The map on the target layer grid, normalised to [0, 1].
    cam: Vec<f32>,
}

/// Summary of one Grad-CAM computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CamStats {
    /// Target class.
    pub class: usize,
    /// Largest value of `ReLU(Σ α_k A_k)` before normalisation (0 when the class has no
    /// positive evidence anywhere).
    pub raw_max: f32,
}

impl GradCam {
    /// Sizes the workspace for `head`.
    pub fn new(head: Head) -> Self {
        let mut offsets = Vec::with_capacity(head.ops.len() + 1);
        offsets.push(0);
        let mut total = 0usize;
        for op in head.ops.iter().skip(1) {
            offsets.push(total);
            total += op.len_in;
        }
        offsets.push(total);
        total += head.logits;
        let spatial_ops_before_pool = head
            .ops
            .iter()
            .take_while(|o| !matches!(o.kind, HeadOpKind::SpatialMean))
            .count();
        let needs_forward = head
            .ops
            .iter()
            .any(|o| matches!(o.kind, HeadOpKind::Relu | HeadOpKind::Clip { .. }));
        let grad_activations = if spatial_ops_before_pool > 0 {
            vec![0f32; head.channels * head.height * head.width]
        } else {
            Vec::new()
        };
        GradCam {
            values: vec![0f32; total],
            grads: vec![0f32; total],
            grad_activations,
            offsets,
            needs_forward,
            alpha: vec![0f32; head.channels],
            cam: vec![0f32; head.height * head.width],
            head,
        }
    }

    /// The head this workspace was built for.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Height of the CAM grid.
    pub fn height(&self) -> usize {
        self.head.height
    }

    /// Width of the CAM grid.
    pub fn width(&self) -> usize {
        self.head.width
    }

    /// The normalised map of the last [`GradCam::compute`], row-major `height x width`.
    pub fn cam(&self) -> &[f32] {
        &self.cam
    }

    /// The channel weights α of the last [`GradCam::compute`].
    pub fn alpha(&self) -> &[f32] {
        &self.alpha
    }

    /// The logits recomputed by the last [`GradCam::forward`].
    pub fn recomputed_logits(&self) -> &[f32] {
        let start = self.offsets[self.head.ops.len()];
        &self.values[start..start + self.head.logits]
    }

    fn check_len(&self, activations: &[f32]) -> Result<(), GradCamError> {
        let expected = self.head.channels * self.head.height * self.head.width;
        if activations.len() != expected {
            return Err(GradCamError::Activations {
                expected,
                got: activations.len(),
            });
        }
        Ok(())
    }

    /// Runs the head forward on `activations`, keeping every op's input for backprop.
    pub fn forward(&mut self, activations: &[f32]) -> Result<(), GradCamError> {
        self.check_len(activations)?;
        let n_ops = self.head.ops.len();
        let (hw, channels, channels_last) = (
            self.head.height * self.head.width,
            self.head.channels,
            self.head.channels_last,
        );
        for i in 0..n_ops {
            let out_off = self.offsets[i + 1];
            let op = &self.head.ops[i];
            let (before, after) = self.values.split_at_mut(out_off);
            let input: &[f32] = if i == 0 {
                activations
            } else {
                &before[self.offsets[i]..self.offsets[i] + op.len_in]
            };
            let out = &mut after[..op.len_out];
            forward_op(&op.kind, input, out, hw, channels, channels_last);
        }
        Ok(())
    }

    /// Checks that the head recomputed from the graph reproduces the model's logits, so an
    /// unread or misread op can never produce a plausible but wrong heatmap.
    pub fn verify(
        &mut self,
        activations: &[f32],
        model_logits: &[f32],
    ) -> Result<(), GradCamError> {
        self.forward(activations)?;
        let scale = model_logits.iter().fold(1f32, |m, v| m.max(v.abs()));
        let tolerance = 1e-3 * scale;
        for (index, (r, m)) in self
            .recomputed_logits()
            .iter()
            .zip(model_logits)
            .enumerate()
        {
            let close = (r - m).abs() <= tolerance;
            if !close {
                return Err(GradCamError::HeadMismatch {
                    index,
                    recomputed: *r,
                    model: *m,
                    tolerance,
                });
            }
        }
        Ok(())
    }

    /// Computes the Grad-CAM map of `class` from the target layer's `activations`.
    ///
    /// After it returns, [`GradCam::cam`] holds `ReLU(Σ_k α_k A_k)` min-max normalised as
    /// pytorch-grad-cam does (`x -= min; x /= max + 1e-7`). Allocates nothing.
    pub fn compute(&mut self, activations: &[f32], class: usize) -> Result<CamStats, GradCamError> {
        self.check_len(activations)?;
        if class >= self.head.logits {
            return Err(GradCamError::Class {
                class,
                classes: self.head.logits,
            });
        }
        if self.needs_forward {
            self.forward(activations)?;
        }
        self.backward(activations, class);
        let raw_max = self.weighted_sum(activations);
        scale_min_max(&mut self.cam);
        Ok(CamStats { class, raw_max })
    }

    fn backward(&mut self, activations: &[f32], class: usize) {
        let n_ops = self.head.ops.len();
        let (hw, channels, channels_last) = (
            self.head.height * self.head.width,
            self.head.channels,
            self.head.channels_last,
        );
        // Seed: ∂y_c/∂y = one-hot(c).
        let out_off = self.offsets[n_ops];
        let logits = self.head.logits;
        self.grads[out_off..out_off + logits].fill(0.0);
        self.grads[out_off + class] = 1.0;
        for i in (0..n_ops).rev() {
            let op = &self.head.ops[i];
            let (g_before, g_after) = self.grads.split_at_mut(self.offsets[i + 1]);
            let g_out = &g_after[..op.len_out];
            let x: &[f32] = if i == 0 {
                activations
            } else {
                &self.values[self.offsets[i]..self.offsets[i] + op.len_in]
            };
            let g_in: &mut [f32] = if i == 0 {
                if let HeadOpKind::SpatialMean = op.kind {
                    // α_k = mean over positions of ∂y/∂A_k = g_k / (H·W) (uniform).
                    let inv = 1.0 / hw as f32;
                    for (a, g) in self.alpha.iter_mut().zip(g_out) {
                        *a = g * inv;
                    }
                    return;
                }
                &mut self.grad_activations[..]
            } else {
                &mut g_before[self.offsets[i]..self.offsets[i] + op.len_in]
            };
            backward_op(&op.kind, x, g_out, g_in, hw, channels, channels_last);
        }
        // An op before the pool: average the full spatial gradient per channel.
        let inv = 1.0 / hw as f32;
        self.alpha.fill(0.0);
        if channels_last {
            for p in 0..hw {
                let row = &self.grad_activations[p * channels..(p + 1) * channels];
                for (a, g) in self.alpha.iter_mut().zip(row) {
                    *a += g;
                }
            }
        } else {
            for (k, a) in self.alpha.iter_mut().enumerate() {
                *a = self.grad_activations[k * hw..(k + 1) * hw].iter().sum();
            }
        }
        for a in &mut self.alpha {
            *a *= inv;
        }
    }

    /// `cam = ReLU(Σ_k α_k A_k)`; returns its maximum.
    fn weighted_sum(&mut self, activations: &[f32]) -> f32 {
        let hw = self.head.height * self.head.width;
        let channels = self.head.channels;
        self.cam.fill(0.0);
        if self.head.channels_last {
            for (p, c) in self.cam.iter_mut().enumerate() {
                let row = &activations[p * channels..(p + 1) * channels];
                *c = row.iter().zip(&self.alpha).map(|(a, w)| a * w).sum();
            }
        } else {
            for (k, w) in self.alpha.iter().enumerate() {
                if *w == 0.0 {
                    continue;
                }
                let plane = &activations[k * hw..(k + 1) * hw];
                for (c, a) in self.cam.iter_mut().zip(plane) {
                    *c += w * a;
                }
            }
        }
        let mut max = 0f32;
        for c in &mut self.cam {
            *c = c.max(0.0);
            max = max.max(*c);
        }
        max
    }
}

fn round_half_even(x: f32) -> f32 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

fn forward_op(
    kind: &HeadOpKind,
    x: &[f32],
    y: &mut [f32],
    hw: usize,
    channels: usize,
    channels_last: bool,
) {
    match kind {
        HeadOpKind::SpatialMean => {
            let inv = 1.0 / hw as f32;
            if channels_last {
                y.fill(0.0);
                for p in 0..hw {
                    for (o, v) in y.iter_mut().zip(&x[p * channels..(p + 1) * channels]) {
                        *o += v;
                    }
                }
                y.iter_mut().for_each(|o| *o *= inv);
            } else {
                for (k, o) in y.iter_mut().enumerate() {
                    *o = x[k * hw..(k + 1) * hw].iter().sum::<f32>() * inv;
                }
            }
        }
        HeadOpKind::Identity => y.copy_from_slice(x),
        HeadOpKind::Relu => y.iter_mut().zip(x).for_each(|(o, v)| *o = v.max(0.0)),
        HeadOpKind::Clip { lo, hi } => y
            .iter_mut()
            .zip(x)
            .for_each(|(o, v)| *o = v.max(*lo).min(*hi)),
        HeadOpKind::Dense {
            n_in, weight, bias, ..
        } => {
            for (o, (row, b)) in y.iter_mut().zip(weight.chunks_exact(*n_in).zip(bias)) {
                *o = row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b;
            }
        }
        HeadOpKind::AddConst { bias } => {
            if bias.len() == 1 {
                y.iter_mut().zip(x).for_each(|(o, v)| *o = v + bias[0]);
            } else {
                y.iter_mut()
                    .zip(x.iter().zip(bias))
                    .for_each(|(o, (v, b))| *o = v + b);
            }
        }
        HeadOpKind::Quantize {
            scale,
            zero_point,
            qmin,
            qmax,
        } => y.iter_mut().zip(x).for_each(|(o, v)| {
            *o = (round_half_even(v / scale) + zero_point).clamp(*qmin, *qmax);
        }),
        HeadOpKind::Dequantize { scale, zero_point } => y
            .iter_mut()
            .zip(x)
            .for_each(|(o, v)| *o = (v - zero_point) * scale),
    }
}

fn backward_op(
    kind: &HeadOpKind,
    x: &[f32],
    g_out: &[f32],
    g_in: &mut [f32],
    hw: usize,
    channels: usize,
    channels_last: bool,
) {
    match kind {
        HeadOpKind::SpatialMean => {
            let inv = 1.0 / hw as f32;
            if channels_last {
                for p in 0..hw {
                    for (gi, go) in g_in[p * channels..(p + 1) * channels].iter_mut().zip(g_out) {
                        *gi = go * inv;
                    }
                }
            } else {
                for (k, go) in g_out.iter().enumerate() {
                    g_in[k * hw..(k + 1) * hw].fill(go * inv);
                }
            }
        }
        HeadOpKind::Identity | HeadOpKind::AddConst { .. } => g_in.copy_from_slice(g_out),
        HeadOpKind::Relu => g_in
            .iter_mut()
            .zip(g_out.iter().zip(x))
            .for_each(|(gi, (go, v))| *gi = if *v > 0.0 { *go } else { 0.0 }),
        HeadOpKind::Clip { lo, hi } => g_in
            .iter_mut()
            .zip(g_out.iter().zip(x))
            .for_each(|(gi, (go, v))| *gi = if *v >= *lo && *v <= *hi { *go } else { 0.0 }),
        HeadOpKind::Dense { n_in, weight, .. } => {
            g_in.fill(0.0);
            for (row, go) in weight.chunks_exact(*n_in).zip(g_out) {
                if *go == 0.0 {
                    continue;
                }
                for (gi, w) in g_in.iter_mut().zip(row) {
                    *gi += go * w;
                }
            }
        }
        HeadOpKind::Quantize { scale, .. } => {
            // Straight-through estimator: rounding and saturation are treated as identity,
            // so d(x / scale)/dx. (With PyTorch's clipping mask a saturated output quantiser
            // would zero the whole explanation; see the module docs.)
            g_in.iter_mut()
                .zip(g_out)
                .for_each(|(gi, go)| *gi = go / scale);
        }
        HeadOpKind::Dequantize { scale, .. } => g_in
            .iter_mut()
            .zip(g_out)
            .for_each(|(gi, go)| *gi = go * scale),
    }
}
