//! One frame's analysis: preprocess → model → Grad-CAM → heatmap, in buffers sized once.

use std::time::Duration;

use crate::frame::RgbFrame;
use crate::gradcam::{GradCam, GradCamError};
use crate::heatmap::{scale_min_max, ColorLut, ColorMapKind, HeatmapError, Upsampler};
use crate::model::{argmax, Model, ModelError};
use crate::preprocess::{centre_square_crop, CropRect, PreprocessError, Preprocessor};

use super::{ProbabilitySmoother, Stage, StageProbe};

/// Errors analysing a frame.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Preprocessing failed (a frame of the wrong size).
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Grad-CAM failed.
    #[error(transparent)]
    GradCam(#[from] GradCamError),
    /// Heatmap rendering failed.
    #[error(transparent)]
    Heatmap(#[from] HeatmapError),
    /// The configured target class is not one of the model's labels.
    #[error("target class {class:?} is not a label of model {model}; its labels are {labels:?}")]
    UnknownClass {
        /// Requested label id.
        class: String,
        /// Model name.
        model: String,
        /// Label ids.
        labels: Vec<String>,
    },
}

/// The result of analysing one frame (pooled: allocated once, overwritten in place).
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Sequence number of the analysed frame.
    pub frame_sequence: u64,
    /// Timestamp of the analysed frame.
    pub frame_timestamp: Duration,
    /// Class Grad-CAM explains and the screen shows: the configured one, else the argmax of
    /// `probabilities`.
    pub class: usize,
    /// The probabilities shown, label order: the frame's own, or, with smoothing
    /// ([`Analyzer::set_smoothing`]), their average over the last frames.
    pub probabilities: Vec<f32>,
    /// This frame's own softmax probabilities, label order (what `dermcam infer` gives for
    /// the same pixels).
    pub frame_probabilities: Vec<f32>,
    /// Logits, label order.
    pub logits: Vec<f32>,
    /// Normalised Grad-CAM map on the target layer grid, row-major.
    pub cam: Vec<f32>,
    /// Grid width.
    pub cam_width: usize,
    /// Grid height.
    pub cam_height: usize,
    /// Largest raw CAM value before normalisation (0: no positive evidence).
    pub cam_raw_max: f32,
    /// The coloured heatmap at crop size, packed RGB.
    pub heat_rgb: Vec<u8>,
    /// The analysed crop of the frame.
    pub crop: CropRect,
}

impl Analysis {
    /// An empty analysis sized for a model and crop.
    pub fn new(classes: usize, cam_width: usize, cam_height: usize, crop: CropRect) -> Self {
        Analysis {
            frame_sequence: 0,
            frame_timestamp: Duration::ZERO,
            class: 0,
            probabilities: vec![0.0; classes],
            frame_probabilities: vec![0.0; classes],
            logits: vec![0.0; classes],
            cam: vec![0.0; cam_width * cam_height],
            cam_width,
            cam_height,
            cam_raw_max: 0.0,
            heat_rgb: vec![0; crop.width as usize * crop.height as usize * 3],
            crop,
        }
    }

    /// Copies `other` into this analysis of the same shapes without allocating (as
    /// [`RgbFrame::copy_from`] does for frames); `false`, and nothing copied, if the shapes
    /// differ.
    pub fn copy_from(&mut self, other: &Analysis) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let Analysis {
            frame_sequence,
            frame_timestamp,
            class,
            probabilities,
            frame_probabilities,
            logits,
            cam,
            cam_width,
            cam_height,
            cam_raw_max,
            heat_rgb,
            crop,
        } = other;
        if self.probabilities.len() != probabilities.len()
            || self.frame_probabilities.len() != frame_probabilities.len()
            || self.logits.len() != logits.len()
            || self.cam.len() != cam.len()
            || self.heat_rgb.len() != heat_rgb.len()
        {
            return false;
        }
        self.frame_sequence = *frame_sequence;
        self.frame_timestamp = *frame_timestamp;
        self.class = *class;
        self.probabilities.copy_from_slice(probabilities);
        self.frame_probabilities
            .copy_from_slice(frame_probabilities);
        self.logits.copy_from_slice(logits);
        self.cam.copy_from_slice(cam);
        self.cam_width = *cam_width;
        self.cam_height = *cam_height;
        self.cam_raw_max = *cam_raw_max;
        self.heat_rgb.copy_from_slice(heat_rgb);
        self.crop = *crop;
        true
    }
}

/// Analyses frames of one size with one model.
#[derive(Debug)]
pub struct Analyzer {
    model: Model,
    pre: Preprocessor,
    cam: GradCam,
    upsampler: Upsampler,
    lut: ColorLut,
    upsampled: Vec<f32>,
    crop: CropRect,
    target: Option<usize>,
    frame_size: (u32, u32),
    smoother: Option<ProbabilitySmoother>,
}

impl Analyzer {
    /// Sizes everything for `frame_width x frame_height` frames.
    ///
    /// `crop_fraction` is the side of the centre square relative to the frame's short side;
    /// `target` a label id to explain instead of the top class.
    pub fn new(
        model: Model,
        frame_width: u32,
        frame_height: u32,
        crop_fraction: f32,
        colormap: ColorMapKind,
        target: Option<&str>,
    ) -> Result<Self, AnalyzeError> {
        let target = match target {
            None => None,
            Some(id) => Some(model.manifest().label_index(id).ok_or_else(|| {
                AnalyzeError::UnknownClass {
                    class: id.to_string(),
                    model: model.manifest().name.clone(),
                    labels: model
                        .manifest()
                        .labels
                        .iter()
                        .map(|l| l.id.clone())
                        .collect(),
                }
            })?),
        };
        let crop = centre_square_crop(frame_width, frame_height, crop_fraction);
        let pre = Preprocessor::new(
            frame_width,
            frame_height,
            crop,
            &model.manifest().tensor_spec(),
        )?;
        let cam = GradCam::new(model.head().clone());
        let upsampler = Upsampler::new(
            cam.width(),
            cam.height(),
            crop.width as usize,
            crop.height as usize,
        )?;
        Ok(Analyzer {
            upsampled: vec![0.0; crop.width as usize * crop.height as usize],
            lut: ColorLut::new(colormap),
            model,
            pre,
            cam,
            upsampler,
            crop,
            target,
            frame_size: (frame_width, frame_height),
            smoother: None,
        })
    }

    /// Averages the probabilities over frames with time constant `tau`
    /// ([`ProbabilitySmoother`]): the shown class is the argmax of the average and Grad-CAM
    /// explains that class on the current frame. `None` or zero: every frame stands alone
    /// (the default; `dermcam infer` never smooths). Call at start-up: it allocates.
    pub fn set_smoothing(&mut self, tau: Option<Duration>) {
        self.smoother = tau
            .filter(|t| !t.is_zero())
            .map(|t| ProbabilitySmoother::new(self.model.manifest().labels.len(), t));
    }

    /// The smoothing time constant, if the probabilities are averaged over frames.
    pub fn smoothing(&self) -> Option<Duration> {
        self.smoother.as_ref().map(|s| s.time_constant())
    }

    /// Re-sizes the buffers for frames of another size (for still images of varying size;
    /// the frame loop never calls it). A no-op when the size is unchanged.
    pub fn resize_for(
        &mut self,
        frame_width: u32,
        frame_height: u32,
        crop_fraction: f32,
    ) -> Result<(), AnalyzeError> {
        let crop = centre_square_crop(frame_width, frame_height, crop_fraction);
        if (frame_width, frame_height) == self.frame_size && crop == self.crop {
            return Ok(());
        }
        self.pre = Preprocessor::new(
            frame_width,
            frame_height,
            crop,
            &self.model.manifest().tensor_spec(),
        )?;
        self.upsampler = Upsampler::new(
            self.cam.width(),
            self.cam.height(),
            crop.width as usize,
            crop.height as usize,
        )?;
        self.upsampled = vec![0.0; crop.width as usize * crop.height as usize];
        self.crop = crop;
        self.frame_size = (frame_width, frame_height);
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The analysed crop.
    pub fn crop(&self) -> CropRect {
        self.crop
    }

    /// Frame size this analyzer was built for.
    pub fn frame_size(&self) -> (u32, u32) {
        self.frame_size
    }

    /// An [`Analysis`] buffer sized for this analyzer.
    pub fn new_analysis(&self) -> Analysis {
        Analysis::new(
            self.model.class_count(),
            self.cam.width(),
            self.cam.height(),
            self.crop,
        )
    }

    /// Analyses `frame` into `out`. Allocates nothing itself; tract's run allocates (charged
    /// to its own bucket, see [`crate::alloc_count`]).
    pub fn analyze(
        &mut self,
        frame: &RgbFrame,
        out: &mut Analysis,
        probe: &mut dyn StageProbe,
    ) -> Result<(), AnalyzeError> {
        probe.begin(Stage::Preprocess);
        let input = self.model.input_mut()?;
        let r = self.pre.run(frame.data(), input);
        probe.end(Stage::Preprocess);
        r?;

        probe.begin(Stage::Inference);
        let r = self.model.run();
        probe.end(Stage::Inference);
        r?;

        probe.begin(Stage::GradCam);
        let shown = match &mut self.smoother {
            Some(s) => s.update(self.model.probabilities(), frame.timestamp),
            None => self.model.probabilities(),
        };
        out.probabilities.copy_from_slice(shown);
        let class = self.target.unwrap_or_else(|| argmax(&out.probabilities));
        let r = self.cam.compute(self.model.activations(), class);
        probe.end(Stage::GradCam);
        let stats = r?;

        probe.begin(Stage::Heatmap);
        let r = self.render_heat(out);
        probe.end(Stage::Heatmap);
        r?;

        out.frame_sequence = frame.sequence;
        out.frame_timestamp = frame.timestamp;
        out.class = class;
        out.cam_raw_max = stats.raw_max;
        out.frame_probabilities
            .copy_from_slice(self.model.probabilities());
        out.logits.copy_from_slice(self.model.logits());
        out.cam.copy_from_slice(self.cam.cam());
        out.crop = self.crop;
        Ok(())
    }

    /// Upsamples the CAM to the crop, renormalises it (as pytorch-grad-cam does) and colours
    /// it.
    fn render_heat(&mut self, out: &mut Analysis) -> Result<(), HeatmapError> {
        self.upsampler.run(self.cam.cam(), &mut self.upsampled)?;
        // pytorch-grad-cam clamps at 0 here; bilinear weights are non-negative and the grid
        // is already in [0, 1], so the upsampled map is too and that pass would change nothing.
        scale_min_max(&mut self.upsampled);
        self.lut.colorize(&self.upsampled, &mut out.heat_rgb)
    }

    /// The upsampled, normalised map of the last analysis (crop size, row-major).
    pub fn upsampled_cam(&self) -> &[f32] {
        &self.upsampled
    }
}
