//! `dermcam check-model`: says whether a model and its manifest can be used, and exactly why
//! not.

use std::path::Path;

use serde::Serialize;

use crate::model::{Model, ModelError};

/// What `check-model` reports for a usable model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Manifest path.
    pub manifest: String,
    /// Model name.
    pub name: String,
    /// Model file.
    pub model_file: String,
    /// Verified sha256.
    pub sha256: String,
    /// Input tensor shape.
    pub input_shape: Vec<usize>,
    /// Input layout.
    pub layout: String,
    /// Target layer name and shape.
    pub target_layer: String,
    /// Its shape.
    pub target_shape: Vec<usize>,
    /// Logits name.
    pub logits: String,
    /// Head ops from the graph.
    pub head_ops: Vec<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Quantised op types in the graph.
    pub quantised_ops: Vec<String>,
    /// Declared precision.
    pub precision: Option<String>,
    /// Load + verify time in milliseconds.
    pub load_ms: f64,
}

/// Loads and verifies a model; every failure is a [`ModelError`] naming the problem.
pub fn check_model(manifest: &Path) -> Result<ModelReport, ModelError> {
    let model = Model::load(manifest)?;
    let m = model.manifest();
    let (w, h) = (m.input.width as usize, m.input.height as usize);
    Ok(ModelReport {
        manifest: manifest.display().to_string(),
        name: m.name.clone(),
        model_file: m.model_path.display().to_string(),
        sha256: m.sha256.clone(),
        input_shape: match m.layout {
            crate::preprocess::Layout::Nchw => vec![1, 3, h, w],
            crate::preprocess::Layout::Nhwc => vec![1, h, w, 3],
        },
        layout: format!("{:?}", m.layout).to_uppercase(),
        target_layer: m.outputs.target_layer.clone(),
        target_shape: model.target_shape().to_vec(),
        logits: m.outputs.logits.clone(),
        head_ops: model.head().op_types(),
        labels: m.labels.iter().map(|l| l.id.clone()).collect(),
        quantised_ops: model.quantised_ops().to_vec(),
        precision: m.precision.clone(),
        load_ms: model.load_time().as_secs_f64() * 1e3,
    })
}
