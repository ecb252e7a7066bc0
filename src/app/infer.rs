//! `dermcam infer`: classify still images and write their overlays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::stills::{load_rgb_with, StillsError};
use crate::compose::{Composer, Rates};
use crate::display::png::write_png_atomic;
use crate::display::DisplayError;
use crate::frame::RgbFrame;
use crate::heatmap::ColorMapKind;
use crate::model::Model;
use crate::pipeline::{AnalyzeError, Analyzer, NoProbe};

/// Options of `dermcam infer`.
#[derive(Debug, Clone)]
pub struct InferOptions {
    /// Write overlays here (none: no overlays).
    pub out_dir: Option<PathBuf>,
    /// Explain this class instead of the top one.
    pub class: Option<String>,
    /// Crop fraction.
    pub crop_fraction: f32,
    /// Colour map.
    pub colormap: ColorMapKind,
    /// Heatmap opacity.
    pub opacity: f32,
    /// Low-confidence threshold for the overlay.
    pub low_confidence: f32,
    /// JPEG decoder for JPEG files.
    pub jpeg_decoder: crate::convert::JpegDecoderChoice,
}

impl Default for InferOptions {
    /// `dermcam infer`'s defaults: no overlays, the top class, the whole centre square, jet
    /// at 0.45, low confidence below 0.5, libjpeg-turbo when installed.
    fn default() -> Self {
        InferOptions {
            out_dir: None,
            class: None,
            crop_fraction: 1.0,
            colormap: ColorMapKind::Jet,
            opacity: 0.45,
            low_confidence: 0.5,
            jpeg_decoder: crate::convert::JpegDecoderChoice::Auto,
        }
    }
}

/// Errors for one image.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] StillsError),
    /// Analysis failed.
    #[error("{path}: {source}")]
    Analyze {
        /// Image.
        path: PathBuf,
        /// Cause.
        source: Box<AnalyzeError>,
    },
    /// The overlay could not be written.
    #[error(transparent)]
    Write(#[from] DisplayError),
}

/// The crop, in source pixels.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CropJson {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The Grad-CAM grid.
#[derive(Debug, Clone, Serialize)]
pub struct CamJson {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Normalised values, row-major.
    pub values: Vec<f32>,
}

/// One line of `dermcam infer --json` (a stable interface: see the README).
#[derive(Debug, Clone, Serialize)]
pub struct InferResult {
    /// The image.
    pub path: String,
    /// Top class id.
    pub top_class: String,
    /// Its full name.
    pub top_name: String,
    /// Its probability.
    pub top_probability: f32,
    /// Every class's probability.
    pub probabilities: BTreeMap<String, f32>,
    /// The class the heatmap explains.
    pub cam_class: String,
    /// The analysed crop.
    pub crop: CropJson,
    /// The Grad-CAM grid.
    pub cam: CamJson,
    /// The overlay file, if written.
    pub overlay: Option<String>,
    /// Model name.
    pub model: String,
    /// The JPEG decoder that decoded the image (`null` for PNG).
    pub jpeg_decoder: Option<&'static str>,
}

/// Classifies images one after another with one model.
#[derive(Debug)]
pub struct Inferrer {
    analyzer: Analyzer,
    composer: Composer,
    options: InferOptions,
}

impl Inferrer {
    /// Prepares inference with `model`.
    pub fn new(model: Model, options: InferOptions) -> Result<Self, AnalyzeError> {
        let labels = model.manifest().labels.clone();
        // Sized for a typical frame; re-sized per image.
        let analyzer = Analyzer::new(
            model,
            640,
            480,
            options.crop_fraction,
            options.colormap,
            options.class.as_deref(),
        )?;
        Ok(Inferrer {
            analyzer,
            composer: Composer::new(labels, options.opacity, options.low_confidence),
            options,
        })
    }

    /// Classifies one image (and writes its overlay if an output folder is set).
    pub fn infer(&mut self, path: &Path) -> Result<InferResult, InferError> {
        let img = load_rgb_with(path, self.options.jpeg_decoder)?;
        let (w, h) = img.dimensions();
        let jpeg_decoder = crate::capture::stills::is_jpeg_path(path)
            .then(|| crate::convert::resolved_jpeg_decoder_name(self.options.jpeg_decoder));
        let analyze_err = |source| InferError::Analyze {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        self.analyzer
            .resize_for(w, h, self.options.crop_fraction)
            .map_err(analyze_err)?;
        let mut frame = RgbFrame::new(w, h);
        frame.data_mut().copy_from_slice(img.as_raw());
        let mut analysis = self.analyzer.new_analysis();
        self.analyzer
            .analyze(&frame, &mut analysis, &mut NoProbe)
            .map_err(analyze_err)?;
        let manifest = self.analyzer.model().manifest();
        let top = crate::model::argmax(&analysis.probabilities);
        let overlay = match &self.options.out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| DisplayError::Write {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "image".into());
                let out_path = dir.join(format!("{stem}-overlay.png"));
                let mut out = RgbFrame::new(w, h);
                self.composer
                    .compose(&frame, Some(&analysis), Rates::default(), &mut out)
                    .map_err(|e| DisplayError::Write {
                        path: out_path.clone(),
                        reason: e.to_string(),
                    })?;
                write_png_atomic(&out_path, &out)?;
                Some(out_path.display().to_string())
            }
            None => None,
        };
        Ok(InferResult {
            path: path.display().to_string(),
            top_class: manifest.labels[top].id.clone(),
            top_name: manifest.labels[top].name.clone(),
            top_probability: analysis.probabilities[top],
            probabilities: manifest
                .labels
                .iter()
                .zip(&analysis.probabilities)
                .map(|(l, p)| (l.id.clone(), *p))
                .collect(),
            cam_class: manifest.labels[analysis.class].id.clone(),
            crop: CropJson {
                x: analysis.crop.x,
                y: analysis.crop.y,
                width: analysis.crop.width,
                height: analysis.crop.height,
            },
            cam: CamJson {
                height: analysis.cam_height,
                width: analysis.cam_width,
                values: analysis.cam.clone(),
            },
            overlay,
            model: manifest.name.clone(),
            jpeg_decoder,
        })
    }
}
