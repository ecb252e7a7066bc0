//! The model manifest: a TOML file beside the ONNX model saying how to feed it, which
//! tensors to read, what its classes are, and which file (by sha256) it describes.
//! The format is documented in `docs/formats.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::preprocess::{Layout, TensorSpec};

/// Errors reading or validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read model manifest {path}: {source}")]
    Read {
        /// Manifest path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML or has unknown or mistyped keys.
    #[error("model manifest {path} is invalid: {message}")]
    Parse {
        /// Manifest path.
        path: PathBuf,
        /// What the TOML parser said (names the key).
        message: String,
    },
    /// A field has a value dermcam cannot use.
    #[error("model manifest {path}: field `{field}` {problem}")]
    Field {
        /// Manifest path.
        path: PathBuf,
        /// Dotted field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The model file named by the manifest could not be read.
    #[error("model file {path} (named by `model` in {manifest}) cannot be read: {source}")]
    ModelFile {
        /// Model path.
        path: PathBuf,
        /// Manifest path.
        manifest: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The model file's sha256 differs from the manifest's.
    #[error("model file {path} has sha256 {actual}, but its manifest {manifest} says {expected}: the file is not the model the manifest describes")]
    Sha256Mismatch {
        /// Model path.
        path: PathBuf,
        /// Manifest path.
        manifest: PathBuf,
        /// From the manifest.
        expected: String,
        /// Of the file.
        actual: String,
    },
}

/// One class of the classifier.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Short id, e.g. `mel`.
    pub id: String,
    /// Full name shown to the clinician, e.g. `Melanoma`.
    pub name: String,
}

/// `[input]`: how to build the input tensor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// ONNX input name (default: the model's first input).
    pub name: Option<String>,
    /// Tensor width.
    pub width: u32,
    /// Tensor height.
    pub height: u32,
    /// `NCHW` or `NHWC`.
    pub layout: String,
    /// Pixel values are divided by this first (e.g. 255).
    pub scale: f32,
    /// Per-channel mean, RGB order, after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, RGB order.
    pub std: [f32; 3],
}

/// `[outputs]`: the tensors dermcam reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSection {
    /// Activations of the Grad-CAM target layer.
    pub target_layer: String,
    /// Pre-softmax class scores.
    pub logits: String,
}

/// `[head]`: the ops between the target layer and the logits, as the manifest expects them.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadSection {
    /// ONNX op types in graph order.
    #[serde(default)]
    pub ops: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default)]
    version: Option<String>,
    model: PathBuf,
    sha256: String,
    #[serde(default)]
    precision: Option<String>,
    #[serde(default)]
    description: Option<String>,
    input: InputSection,
    outputs: OutputsSection,
    #[serde(default)]
    head: HeadSection,
    labels: Vec<Label>,
    #[serde(default)]
    provenance: BTreeMap<String, toml::Value>,
}

/// A parsed and validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the manifest was read from.
    pub path: PathBuf,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: Option<String>,
    /// The model file, resolved relative to the manifest.
    pub model_path: PathBuf,
    /// Expected sha256 of the model file (lower-case hex).
    pub sha256: String,
    /// `f32` or `int8`, as declared.
    pub precision: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Input section.
    pub input: InputSection,
    /// Input tensor layout.
    pub layout: Layout,
    /// Output tensor names.
    pub outputs: OutputsSection,
    /// Expected head ops.
    pub head: HeadSection,
    /// Classes in logit order.
    pub labels: Vec<Label>,
    /// Free-form provenance (training data, license).
    pub provenance: BTreeMap<String, toml::Value>,
}

impl Manifest {
    /// Reads and validates a manifest (not the model file: see [`Manifest::verify_sha256`]).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` is used for messages and to resolve the model file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let field = |field: &'static str, problem: String| ManifestError::Field {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let layout = match raw.input.layout.as_str() {
            "NCHW" => Layout::Nchw,
            "NHWC" => Layout::Nhwc,
            other => {
                return Err(field(
                    "input.layout",
                    format!("is {other:?}; expected \"NCHW\" or \"NHWC\""),
                ))
            }
        };
        if raw.input.width == 0 || raw.input.height == 0 {
            return Err(field("input.width", "and input.height must be > 0".into()));
        }
        if !(raw.input.scale.is_finite() && raw.input.scale > 0.0) {
            return Err(field(
                "input.scale",
                format!("is {}; must be > 0", raw.input.scale),
            ));
        }
        if raw.input.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(field(
                "input.std",
                format!("is {:?}; every entry must be > 0", raw.input.std),
            ));
        }
        if raw.input.mean.iter().any(|m| !m.is_finite()) {
            return Err(field("input.mean", "has a non-finite entry".into()));
        }
        let sha = raw.sha256.trim().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(field(
                "sha256",
                format!("is {:?}; expected 64 hex digits", raw.sha256),
            ));
        }
        if raw.labels.is_empty() {
            return Err(field("labels", "is empty; one [[labels]] per logit".into()));
        }
        for (i, l) in raw.labels.iter().enumerate() {
            if l.id.trim().is_empty() {
                return Err(field("labels.id", format!("of label {i} is empty")));
            }
            if raw.labels[..i].iter().any(|o| o.id == l.id) {
                return Err(field("labels.id", format!("{:?} appears twice", l.id)));
            }
        }
        if raw.outputs.target_layer.is_empty() || raw.outputs.logits.is_empty() {
            return Err(field(
                "outputs",
                "needs non-empty `target_layer` and `logits`".into(),
            ));
        }
        if let Some(p) = raw.precision.as_deref() {
            if p != "f32" && p != "int8" {
                return Err(field(
                    "precision",
                    format!("is {p:?}; expected \"f32\" or \"int8\""),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Manifest {
            path: path.to_path_buf(),
            name: raw.name,
            version: raw.version,
            model_path: base.join(&raw.model),
            sha256: sha,
            precision: raw.precision,
            description: raw.description,
            input: raw.input,
            layout,
            outputs: raw.outputs,
            head: raw.head,
            labels: raw.labels,
            provenance: raw.provenance,
        })
    }

    /// Reads the model file and checks its sha256 against the manifest; returns the bytes.
    pub fn read_verified_model(&self) -> Result<Vec<u8>, ManifestError> {
        let bytes = std::fs::read(&self.model_path).map_err(|source| ManifestError::ModelFile {
            path: self.model_path.clone(),
            manifest: self.path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != self.sha256 {
            return Err(ManifestError::Sha256Mismatch {
                path: self.model_path.clone(),
                manifest: self.path.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The input tensor's specification for the preprocessor.
    pub fn tensor_spec(&self) -> TensorSpec {
        TensorSpec {
            width: self.input.width,
            height: self.input.height,
            layout: self.layout,
            scale: self.input.scale,
            mean: self.input.mean,
            std: self.input.std,
        }
    }

    /// The index of a label by id.
    pub fn label_index(&self, id: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.id == id)
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}
