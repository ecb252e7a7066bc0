//! The classifier: an ONNX model described by a manifest, run with tract.
//!
//! Loading selects the target layer and the logits as the model's outputs *before*
//! optimisation, so the optimiser keeps the target layer; one tract state stays alive for
//! the life of the process, and the input tensor is written in place and lent to tract
//! without a copy. The head between the two outputs is read from the graph for the
//! Grad-CAM engine, and checked against tract's own logits before it is trusted.

pub mod head;
pub mod manifest;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::alloc_count::{self, Bucket};
use crate::gradcam::{GradCam, GradCamError};
pub use head::{Head, HeadError};
pub use manifest::{Label, Manifest, ManifestError};

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest or the model file is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// tract could not load or run the model.
    #[error("model {path}: tract could not {stage}: {message}")]
    Tract {
        /// Model file.
        path: String,
        /// What was being done.
        stage: &'static str,
        /// tract's error chain.
        message: String,
    },
    /// The head cannot be used for Grad-CAM.
    #[error("model {path}: {source}")]
    Head {
        /// Model file.
        path: String,
        /// Cause.
        source: HeadError,
    },
    /// The head read from the graph does not reproduce the model.
    #[error("model {path}: {source}")]
    Verify {
        /// Model file.
        path: String,
        /// Cause.
        source: GradCamError,
    },
    /// The manifest disagrees with the graph.
    #[error("model {path}: manifest field `{field}` {problem}")]
    Mismatch {
        /// Model file.
        path: String,
        /// Manifest field.
        field: &'static str,
        /// What differs.
        problem: String,
    },
    /// tract still holds the input tensor after a run (it should release it).
    #[error("tract kept a reference to the input tensor after a run; cannot write the next frame in place")]
    InputShared,
}

fn tract_err<'p>(path: &'p Path, stage: &'static str) -> impl Fn(TractError) -> ModelError + 'p {
    move |e| ModelError::Tract {
        path: path.display().to_string(),
        stage,
        message: format!("{e:#}"),
    }
}

/// A loaded model, ready to run one frame at a time.
pub struct Model {
    manifest: Manifest,
    state: TypedSimpleState,
    input: Arc<Tensor>,
    outputs: TVec<TValue>,
    head: Head,
    target_shape: Vec<usize>,
    logit_count: usize,
    probabilities: Vec<f32>,
    load_time: Duration,
    int8_ops: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.manifest.name)
            .field("target_shape", &self.target_shape)
            .field("logits", &self.logit_count)
            .finish()
    }
}

impl Model {
    /// Loads the model a manifest describes: checks the file's sha256, loads it with tract,
    /// reads the head and verifies it reproduces the model's logits.
    pub fn load(manifest_path: &Path) -> Result<Self, ModelError> {
        let manifest = Manifest::load(manifest_path)?;
        Self::from_manifest(manifest)
    }

    /// As [`Model::load`] from a parsed manifest.
    pub fn from_manifest(manifest: Manifest) -> Result<Self, ModelError> {
        let started = Instant::now();
        let bytes = manifest.read_verified_model()?;
        let path = manifest.model_path.clone();
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(tract_err(&path, "parse the ONNX file"))?;
        drop(bytes);
        head::check_tensor_names(
            &proto,
            &manifest.outputs.target_layer,
            &manifest.outputs.logits,
        )
        .map_err(|source| ModelError::Head {
            path: path.display().to_string(),
            source,
        })?;
        let int8_ops = quantised_ops(&proto);
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(tract_err(&path, "translate the ONNX graph"))?;

        let input_index = match &manifest.input.name {
            Some(name) => {
                let names: Vec<String> = model
                    .input_outlets()
                    .map_err(tract_err(&path, "list inputs"))?
                    .iter()
                    .map(|o| model.node(o.node).name.clone())
                    .collect();
                names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| ModelError::Mismatch {
                        path: path.display().to_string(),
                        field: "input.name",
                        problem: format!("is {name:?}, but the model's inputs are {names:?}"),
                    })?
            }
            None => 0,
        };
        let (w, h) = (
            manifest.input.width as usize,
            manifest.input.height as usize,
        );
        let shape: [usize; 4] = match manifest.layout {
            crate::preprocess::Layout::Nchw => [1, 3, h, w],
            crate::preprocess::Layout::Nhwc => [1, h, w, 3],
        };
        if let Ok(declared) = model.input_fact(input_index) {
            if let Some(dims) = declared.shape.concretize() {
                let declared: Vec<i64> = dims.iter().map(|d| d.to_i64().unwrap_or(-1)).collect();
                let wanted: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
                if declared.iter().all(|d| *d >= 0) && declared != wanted {
                    return Err(ModelError::Mismatch {
                        path: path.display().to_string(),
                        field: "input",
                        problem: format!(
                            "describes a {wanted:?} tensor ({:?}), but the model declares its input as {declared:?}",
                            manifest.layout
                        ),
                    });
                }
            }
        }
        model
            .set_input_fact(input_index, f32::fact(shape).into())
            .map_err(tract_err(&path, "set the input shape"))?;
        model
            .select_outputs_by_name([
                manifest.outputs.target_layer.as_str(),
                manifest.outputs.logits.as_str(),
            ])
            .map_err(tract_err(
                &path,
                "select the target layer and logits as outputs",
            ))?;
        let typed = model.into_typed().map_err(|e| ModelError::Mismatch {
            path: path.display().to_string(),
            field: "input",
            problem: format!(
                "describes a {shape:?} f32 tensor ({:?}), which the model does not accept: {e:#}",
                manifest.layout
            ),
        })?;
        let optimized = typed
            .into_optimized()
            .map_err(tract_err(&path, "optimise the model"))?;
        let fact_shape = |ix: usize| -> Result<(Vec<usize>, DatumType), ModelError> {
            let fact = optimized
                .output_fact(ix)
                .map_err(tract_err(&path, "read output shapes"))?;
            let shape = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| ModelError::Tract {
                    path: path.display().to_string(),
                    stage: "resolve output shapes",
                    message: format!("output {ix} has a symbolic shape {:?}", fact.shape),
                })?;
            Ok((shape, fact.datum_type))
        };
        let (target_shape, target_dt) = fact_shape(0)?;
        let (logits_shape, logits_dt) = fact_shape(1)?;
        for (field, dt) in [
            ("outputs.target_layer", target_dt),
            ("outputs.logits", logits_dt),
        ] {
            if dt != DatumType::F32 {
                return Err(ModelError::Mismatch {
                    path: path.display().to_string(),
                    field,
                    problem: format!(
                        "names a {dt:?} tensor; dermcam reads f32 (dequantised) outputs"
                    ),
                });
            }
        }
        let logit_count: usize = logits_shape.iter().product();
        if logit_count != manifest.labels.len() {
            return Err(ModelError::Mismatch {
                path: path.display().to_string(),
                field: "labels",
                problem: format!(
                    "lists {} classes, but the logits {:?} have shape {logits_shape:?}",
                    manifest.labels.len(),
                    manifest.outputs.logits
                ),
            });
        }
        let head = head::extract_head(
            &proto,
            Some(&path),
            &manifest.outputs.target_layer,
            &manifest.outputs.logits,
            &target_shape,
            logit_count,
        )
        .map_err(|source| ModelError::Head {
            path: path.display().to_string(),
            source,
        })?;
        if !manifest.head.ops.is_empty() && manifest.head.ops != head.op_types() {
            return Err(ModelError::Mismatch {
                path: path.display().to_string(),
                field: "head.ops",
                problem: format!(
                    "is {:?}, but the graph's head from {:?} to {:?} is {:?}",
                    manifest.head.ops,
                    manifest.outputs.target_layer,
                    manifest.outputs.logits,
                    head.op_types()
                ),
            });
        }
        let plan = optimized
            .into_runnable()
            .map_err(tract_err(&path, "plan the model"))?;
        let state = TypedSimpleState::new(&plan).map_err(tract_err(&path, "create a state"))?;
        let input =
            Arc::new(Tensor::zero::<f32>(&shape).map_err(tract_err(&path, "allocate the input"))?);
        let mut model = Model {
            manifest,
            state,
            input,
            outputs: tvec!(),
            head,
            target_shape,
            logit_count,
            probabilities: vec![0.0; logit_count],
            load_time: Duration::ZERO,
            int8_ops,
        };
        model.self_check()?;
        model.load_time = started.elapsed();
        Ok(model)
    }

    /// Runs the model on two synthetic inputs and checks the head read from the graph
    /// reproduces tract's logits.
    fn self_check(&mut self) -> Result<(), ModelError> {
        let mut cam = GradCam::new(self.head.clone());
        for pattern in 0..2 {
            let input = self.input_mut()?;
            let n = input.len();
            for (i, v) in input.iter_mut().enumerate() {
                *v = match pattern {
                    0 => 0.0,
                    _ => ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + i as f32 / n as f32),
                };
            }
            self.run()?;
            let (acts, logits) = (self.activations(), self.logits());
            cam.verify(acts, logits)
                .map_err(|source| ModelError::Verify {
                    path: self.manifest.model_path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The head read from the graph.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Shape of the target layer output.
    pub fn target_shape(&self) -> &[usize] {
        &self.target_shape
    }

    /// Number of classes.
    pub fn class_count(&self) -> usize {
        self.logit_count
    }

    /// Time it took to load, verify and plan the model.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Quantised op types found in the graph (empty for a float model).
    pub fn quantised_ops(&self) -> &[String] {
        &self.int8_ops
    }

    /// The input tensor, to be written in place before [`Model::run`].
    pub fn input_mut(&mut self) -> Result<&mut [f32], ModelError> {
        let tensor = Arc::get_mut(&mut self.input).ok_or(ModelError::InputShared)?;
        tensor
            .to_plain_array_view_mut::<f32>()
            .map_err(tract_err(&self.manifest.model_path, "write the input"))?
            .into_slice()
            .ok_or(ModelError::InputShared)
    }

    /// Runs the model on the current input. tract's own allocations are charged to
    /// [`Bucket::Tract`].
    pub fn run(&mut self) -> Result<(), ModelError> {
        let input = TValue::from_const(Arc::clone(&self.input));
        let state = &mut self.state;
        let result = alloc_count::scope(Bucket::Tract, || state.run(tvec!(input)));
        self.outputs = result.map_err(tract_err(&self.manifest.model_path, "run the model"))?;
        self.softmax();
        Ok(())
    }

    /// Target layer activations of the last run.
    pub fn activations(&self) -> &[f32] {
        self.outputs
            .first()
            .and_then(|t| t.as_plain_ram().and_then(|v| v.as_slice::<f32>().ok()))
            .unwrap_or(&[])
    }

    /// Logits of the last run.
    pub fn logits(&self) -> &[f32] {
        self.outputs
            .get(1)
            .and_then(|t| t.as_plain_ram().and_then(|v| v.as_slice::<f32>().ok()))
            .unwrap_or(&[])
    }

    /// Softmax probabilities of the last run.
    pub fn probabilities(&self) -> &[f32] {
        &self.probabilities
    }

    fn softmax(&mut self) {
        let logits = self
            .outputs
            .get(1)
            .and_then(|t| t.as_plain_ram().and_then(|v| v.as_slice::<f32>().ok()))
            .unwrap_or(&[]);
        softmax_into(logits, &mut self.probabilities);
    }
}

/// Numerically stable softmax of `logits` into `out` (same length).
pub fn softmax_into(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (o, l) in out.iter_mut().zip(logits) {
        *o = (l - max).exp();
        sum += *o;
    }
    if sum > 0.0 {
        out.iter_mut().for_each(|o| *o /= sum);
    }
}

/// Index of the largest value (the first one on ties); 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn quantised_ops(proto: &tract_onnx::pb::ModelProto) -> Vec<String> {
    let mut ops: Vec<String> = proto
        .graph
        .iter()
        .flat_map(|g| g.node.iter())
        .map(|n| n.op_type.clone())
        .filter(|t| {
            matches!(
                t.as_str(),
                "QuantizeLinear"
                    | "DequantizeLinear"
                    | "QLinearConv"
                    | "QLinearMatMul"
                    | "ConvInteger"
                    | "MatMulInteger"
            )
        })
        .collect();
    ops.sort();
    ops.dedup();
    ops
}
