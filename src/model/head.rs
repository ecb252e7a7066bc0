//! The classifier head between the Grad-CAM target layer and the logits, read from the
//! ONNX graph so the Grad-CAM engine can back-propagate through it exactly.
//!
//! The head must be a chain: each node takes the previous node's output (the first takes
//! the target layer) plus constants. Supported ops, with their exact gradients:
//!
//! | before the pool (on `C x H x W`) | the pool | after the pool (on a vector) |
//! |---|---|---|
//! | Relu, Clip, Dropout, Identity, QuantizeLinear/DequantizeLinear | GlobalAveragePool, ReduceMean over the spatial axes | Flatten, Reshape, Squeeze, Unsqueeze, Dropout, Identity, Relu, Clip, Gemm, MatMul, Add, QuantizeLinear/DequantizeLinear |
//!
//! QuantizeLinear → DequantizeLinear pairs on activations (QDQ int8 models) are computed
//! exactly in the forward pass and differentiated with the straight-through estimator: the
//! pair's gradient is the identity. Rounding has no useful derivative, and a clipping mask
//! (PyTorch's fake-quant convention) would zero the whole explanation whenever the quantiser
//! on the logits saturates, which calibrated int8 models do on confident frames. This is the
//! one documented approximation; the int8 maps are tested against the f32 reference maps.
//! Any other op is refused by name.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::{DatumType, Tensor};

/// Errors building a head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The target layer tensor does not exist in the graph.
    #[error("the model has no tensor named {name:?} (manifest `outputs.target_layer`){hint}")]
    MissingTargetLayer {
        /// The name from the manifest.
        name: String,
        /// Close names, if any.
        hint: String,
    },
    /// The logits tensor does not exist in the graph.
    #[error("the model has no tensor named {name:?} (manifest `outputs.logits`){hint}")]
    MissingLogits {
        /// The name from the manifest.
        name: String,
        /// Close names, if any.
        hint: String,
    },
    /// No path leads from the target layer to the logits.
    #[error("the logits {logits:?} do not depend on the target layer {target:?}")]
    NotConnected {
        /// Target layer.
        target: String,
        /// Logits.
        logits: String,
    },
    /// An op on the head the engine has no exact gradient for.
    #[error("head op {op_type} (node {node:?}) is not supported by the Grad-CAM engine: supported are {supported}; {advice}")]
    UnsupportedOp {
        /// ONNX op type.
        op_type: String,
        /// Node name.
        node: String,
        /// The supported list.
        supported: &'static str,
        /// What to do.
        advice: &'static str,
    },
    /// A supported op used in a way the engine does not handle.
    #[error("head op {op_type} (node {node:?}): {problem}")]
    UnsupportedUse {
        /// ONNX op type.
        op_type: String,
        /// Node name.
        node: String,
        /// What is not handled.
        problem: String,
    },
    /// The head is not a simple chain.
    #[error("the head is not a chain: node {node:?} ({op_type}) {problem}")]
    NotAChain {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What breaks the chain.
        problem: String,
    },
    /// The head never pools over space.
    #[error("the head from {target:?} to the logits has no GlobalAveragePool or spatial ReduceMean: Grad-CAM needs the target layer to be a spatial feature map")]
    NoPool {
        /// Target layer.
        target: String,
    },
    /// The target layer's shape is not a feature map.
    #[error("the target layer {name:?} has shape {shape:?}; expected a 4-d feature map [1, C, H, W] or [1, H, W, C]")]
    TargetShape {
        /// Target layer.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The head produces a different number of values than the logits have.
    #[error("the head computes {computed} values but the logits {name:?} have {expected}")]
    LogitCount {
        /// Logits name.
        name: String,
        /// From the head.
        computed: usize,
        /// From the model.
        expected: usize,
    },
    /// A constant (weight, bias, scale) could not be read.
    #[error("cannot read constant {name:?} used by node {node:?}: {reason}")]
    Constant {
        /// Tensor name.
        name: String,
        /// Node name.
        node: String,
        /// Why.
        reason: String,
    },
}

/// The list quoted in [`HeadError::UnsupportedOp`].
pub const SUPPORTED_OPS: &str = "GlobalAveragePool, ReduceMean (spatial axes), Flatten, Reshape, Squeeze, Unsqueeze, Dropout, Identity, Gemm, MatMul, Add, Relu, Clip, QuantizeLinear, DequantizeLinear";

/// One differentiable op of the head.
#[derive(Debug, Clone)]
pub enum HeadOpKind {
    /// Mean over the spatial positions of a `C x H x W` map (layout in [`Head`]).
    SpatialMean,
    /// Passes values through unchanged (Flatten, Reshape, Squeeze, Dropout, Identity).
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)`.
    Clip {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// `y = W x + b` with `W` stored `[n_out][n_in]` (alpha and beta folded in).
    Dense {
        /// Inputs.
        n_in: usize,
        /// Outputs.
        n_out: usize,
        /// Row-major `[n_out][n_in]`.
        weight: Vec<f32>,
        /// `n_out` biases (zeros when absent).
        bias: Vec<f32>,
    },
    /// `y = x + b`, `b` broadcast (length 1 or n).
    AddConst {
        /// The constant.
        bias: Vec<f32>,
    },
    /// `y = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)`, as a float.
    Quantize {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: f32,
        /// Smallest representable integer.
        qmin: f32,
        /// Largest representable integer.
        qmax: f32,
    },
    /// `y = (x - zero_point) * scale`.
    Dequantize {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: f32,
    },
}

/// An op with the ONNX node it came from.
#[derive(Debug, Clone)]
pub struct HeadOp {
    /// ONNX op type.
    pub op_type: String,
    /// ONNX node name.
    pub node: String,
    /// What it computes.
    pub kind: HeadOpKind,
    /// Values it takes.
    pub len_in: usize,
    /// Values it produces.
    pub len_out: usize,
}

/// The head of a classifier, from the target layer to the logits.
#[derive(Debug, Clone)]
pub struct Head {
    /// Channels of the target layer.
    pub channels: usize,
    /// Height of the target layer.
    pub height: usize,
    /// Width of the target layer.
    pub width: usize,
    /// Whether the target layer is `[1, H, W, C]` (else `[1, C, H, W]`).
    pub channels_last: bool,
    /// The ops in order.
    pub ops: Vec<HeadOp>,
    /// Number of logits.
    pub logits: usize,
}

impl Head {
    /// The ONNX op types in order, as a manifest's `[head] ops` lists them.
    pub fn op_types(&self) -> Vec<String> {
        self.ops.iter().map(|o| o.op_type.clone()).collect()
    }
}

struct Graph<'a> {
    graph: &'a GraphProto,
    model_dir: Option<String>,
    initializers: HashMap<&'a str, &'a TensorProto>,
    producers: HashMap<&'a str, &'a NodeProto>,
    consumers: HashMap<&'a str, Vec<&'a NodeProto>>,
}

impl<'a> Graph<'a> {
    fn new(model: &'a ModelProto, model_path: Option<&Path>) -> Option<Self> {
        let graph = model.graph.as_ref()?;
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for node in &graph.node {
            for o in &node.output {
                producers.insert(o.as_str(), node);
            }
            for i in &node.input {
                if !i.is_empty() {
                    consumers.entry(i.as_str()).or_default().push(node);
                }
            }
        }
        let initializers = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        Some(Graph {
            graph,
            model_dir: model_path
                .and_then(|p| p.parent())
                .map(|p| p.to_string_lossy().into_owned()),
            initializers,
            producers,
            consumers,
        })
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.producers.contains_key(name)
            || self.initializers.contains_key(name)
            || self.graph.input.iter().any(|i| i.name == name)
    }

    fn hint(&self, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let mut close: Vec<&str> = self
            .producers
            .keys()
            .copied()
            .filter(|k| {
                let k = k.to_ascii_lowercase();
                k.contains(&lower) || lower.contains(&k)
            })
            .collect();
        close.sort_unstable();
        close.truncate(5);
        let outputs: Vec<&str> = self.graph.output.iter().map(|o| o.name.as_str()).collect();
        let mut s = format!("; graph outputs are {outputs:?}");
        if !close.is_empty() {
            s.push_str(&format!("; similar tensors: {close:?}"));
        }
        s
    }

    /// Whether a tensor is a constant (initializer, Constant, or a pure function of constants).
    fn is_constant(&self, name: &str, depth: usize) -> bool {
        if name.is_empty() || self.initializers.contains_key(name) {
            return true;
        }
        if depth > 8 {
            return false;
        }
        match self.producers.get(name) {
            Some(n) if n.op_type == "Constant" => true,
            Some(n) if matches!(n.op_type.as_str(), "DequantizeLinear" | "Identity" | "Cast") => {
                n.input.iter().all(|i| self.is_constant(i, depth + 1))
            }
            _ => false,
        }
    }

    fn constant(&self, name: &str, node: &NodeProto) -> Result<Tensor, HeadError> {
        let err = |reason: String| HeadError::Constant {
            name: name.to_string(),
            node: node.name.clone(),
            reason,
        };
        let load = |t: &TensorProto| -> Result<Tensor, HeadError> {
            let resolver = tract_onnx::data_resolver::default();
            tract_onnx::tensor::load_tensor(&*resolver, t, self.model_dir.as_deref())
                .map_err(|e| err(format!("{e:#}")))
        };
        if let Some(t) = self.initializers.get(name) {
            return load(t);
        }
        let Some(p) = self.producers.get(name) else {
            return Err(err("not an initializer or a constant node".into()));
        };
        match p.op_type.as_str() {
            "Constant" => {
                let t = p
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| err("Constant node without a tensor `value`".into()))?;
                load(t)
            }
            "Identity" | "Cast" => {
                let t = self.constant(&p.input[0], p)?;
                if p.op_type == "Cast" {
                    return to_f32_tensor(&t).map_err(err);
                }
                Ok(t)
            }
            "DequantizeLinear" => {
                let x = to_f32_vec(&self.constant(&p.input[0], p)?).map_err(&err)?;
                let x_t = self.constant(&p.input[0], p)?;
                let scale = to_f32_vec(&self.constant(&p.input[1], p)?).map_err(&err)?;
                let zp = match p.input.get(2).filter(|s| !s.is_empty()) {
                    Some(z) => to_f32_vec(&self.constant(z, p)?).map_err(&err)?,
                    None => vec![0.0],
                };
                let shape = x_t.shape().to_vec();
                let axis = attr_i(p, "axis").unwrap_or(1);
                let rank = shape.len() as i64;
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let out: Vec<f32> = if scale.len() == 1 {
                    x.iter().map(|q| (q - zp[0]) * scale[0]).collect()
                } else {
                    if axis >= shape.len() || shape[axis] != scale.len() {
                        return Err(err(format!(
                            "per-axis scale of length {} does not match axis {axis} of shape {shape:?}",
                            scale.len()
                        )));
                    }
                    let inner: usize = shape[axis + 1..].iter().product();
                    let n_axis = shape[axis];
                    x.iter()
                        .enumerate()
                        .map(|(i, q)| {
                            let k = (i / inner) % n_axis;
                            let z = if zp.len() == 1 { zp[0] } else { zp[k] };
                            (q - z) * scale[k]
                        })
                        .collect()
                };
                Tensor::from_shape(&shape, &out).map_err(|e| err(format!("{e:#}")))
            }
            other => Err(err(format!("produced by a {other} node, not a constant"))),
        }
    }
}

fn to_f32_tensor(t: &Tensor) -> Result<Tensor, String> {
    t.cast_to::<f32>()
        .map(|c| c.into_owned())
        .map_err(|e| format!("{e:#}"))
}

fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>, String> {
    let c = t.cast_to::<f32>().map_err(|e| format!("{e:#}"))?;
    c.try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>().map(|s| s.to_vec()))
        .map_err(|e| format!("{e:#}"))
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n tract_onnx::pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

fn quant_range(dt: DatumType) -> Option<(f32, f32)> {
    match dt {
        DatumType::I8 => Some((-128.0, 127.0)),
        DatumType::U8 => Some((0.0, 255.0)),
        DatumType::I16 => Some((-32768.0, 32767.0)),
        DatumType::U16 => Some((0.0, 65535.0)),
        _ => None,
    }
}

/// Reads the head from an ONNX model.
///
/// `target_shape` is the concrete shape of the target layer (from tract, after the input
/// shape is fixed) and `logit_count` the number of logits.
pub fn extract_head(
    model: &ModelProto,
    model_path: Option<&Path>,
    target: &str,
    logits: &str,
    target_shape: &[usize],
    logit_count: usize,
) -> Result<Head, HeadError> {
    let g = Graph::new(model, model_path).ok_or_else(|| HeadError::MissingTargetLayer {
        name: target.to_string(),
        hint: "; the model has no graph".into(),
    })?;
    check_names(&g, target, logits)?;

    // Nodes on a path target -> logits: forward-reachable from target and
    // backward-reachable from logits.
    let mut forward: HashSet<*const NodeProto> = HashSet::new();
    let mut stack = vec![target];
    let mut seen_tensors: HashSet<&str> = HashSet::new();
    while let Some(t) = stack.pop() {
        if !seen_tensors.insert(t) {
            continue;
        }
        for n in g.consumers.get(t).into_iter().flatten() {
            if forward.insert(*n as *const _) {
                for o in &n.output {
                    stack.push(o.as_str());
                }
            }
        }
    }
    let mut on_path: Vec<&NodeProto> = Vec::new();
    let mut stack = vec![logits];
    let mut seen: HashSet<&str> = HashSet::new();
    while let Some(t) = stack.pop() {
        if t == target || !seen.insert(t) {
            continue;
        }
        if let Some(n) = g.producers.get(t) {
            if forward.contains(&(*n as *const _)) {
                if !on_path.iter().any(|m| std::ptr::eq(*m, *n)) {
                    on_path.push(n);
                }
                for i in &n.input {
                    stack.push(i.as_str());
                }
            }
        }
    }
    if on_path.is_empty() {
        return Err(HeadError::NotConnected {
            target: target.into(),
            logits: logits.into(),
        });
    }

    // Order the chain from the target layer.
    let mut chain: Vec<&NodeProto> = Vec::with_capacity(on_path.len());
    let mut current = target;
    while current != logits {
        let next: Vec<&NodeProto> = on_path
            .iter()
            .copied()
            .filter(|n| n.input.iter().any(|i| i == current))
            .collect();
        let node = match next.as_slice() {
            [one] => *one,
            [] => {
                return Err(HeadError::NotConnected {
                    target: target.into(),
                    logits: logits.into(),
                })
            }
            [first, ..] => {
                return Err(HeadError::NotAChain {
                    node: first.name.clone(),
                    op_type: first.op_type.clone(),
                    problem: format!("tensor {current:?} feeds {} head nodes", next.len()),
                })
            }
        };
        for i in &node.input {
            if i != current && !g.is_constant(i, 0) {
                return Err(HeadError::NotAChain {
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    problem: format!(
                        "also takes the computed tensor {i:?}; only constants may join the head"
                    ),
                });
            }
        }
        if node.output.len() != 1 && node.op_type != "Dropout" {
            return Err(HeadError::NotAChain {
                node: node.name.clone(),
                op_type: node.op_type.clone(),
                problem: format!("has {} outputs", node.output.len()),
            });
        }
        chain.push(node);
        current = node.output[0].as_str();
        if chain.len() > on_path.len() {
            break;
        }
    }

    let (channels, height, width, channels_last) = match target_shape {
        [1, c, h, w] => (*c, *h, *w, false),
        _ => {
            return Err(HeadError::TargetShape {
                name: target.into(),
                shape: target_shape.to_vec(),
            })
        }
    };
    // Layout is decided by the pooling op; [1, C, H, W] is the assumption until then.
    let mut head = Head {
        channels,
        height,
        width,
        channels_last,
        ops: Vec::with_capacity(chain.len()),
        logits: logit_count,
    };
    let mut len = channels * height * width;
    let mut pooled = false;
    let mut chain_input = target;
    for node in chain {
        let unsupported_use = |problem: String| HeadError::UnsupportedUse {
            op_type: node.op_type.clone(),
            node: node.name.clone(),
            problem,
        };
        let (kind, len_out) = match node.op_type.as_str() {
            "GlobalAveragePool" => {
                if pooled {
                    return Err(unsupported_use("pools twice".into()));
                }
                pooled = true;
                (HeadOpKind::SpatialMean, head.channels)
            }
            "ReduceMean" => {
                if pooled {
                    return Err(unsupported_use("pools twice".into()));
                }
                let axes: Vec<i64> = match attr(node, "axes") {
                    Some(a) => a.ints.clone(),
                    None => match node.input.get(1).filter(|s| !s.is_empty()) {
                        Some(name) => to_f32_vec(&g.constant(name, node)?)
                            .map_err(unsupported_use)?
                            .iter()
                            .map(|v| *v as i64)
                            .collect(),
                        None => Vec::new(),
                    },
                };
                let mut axes: Vec<i64> = axes.iter().map(|a| if *a < 0 { a + 4 } else { *a }).collect();
                axes.sort_unstable();
                match axes.as_slice() {
                    [2, 3] => {}
                    [1, 2] => {
                        // [1, H, W, C]: re-read the dims.
                        head.channels_last = true;
                        head.height = target_shape[1];
                        head.width = target_shape[2];
                        head.channels = target_shape[3];
                    }
                    _ => {
                        return Err(unsupported_use(format!(
                            "reduces axes {axes:?}; only the spatial axes [2, 3] (NCHW) or [1, 2] (NHWC) are a global average pool"
                        )))
                    }
                }
                pooled = true;
                (HeadOpKind::SpatialMean, head.channels)
            }
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                if !pooled {
                    return Err(unsupported_use(
                        "reshapes the spatial map before it is pooled".into(),
                    ));
                }
                (HeadOpKind::Identity, len)
            }
            "Dropout" | "Identity" => (HeadOpKind::Identity, len),
            "Relu" => (HeadOpKind::Relu, len),
            "Clip" => {
                let read_bound = |idx: usize, default: f32| -> Result<f32, HeadError> {
                    match node.input.get(idx).filter(|s| !s.is_empty()) {
                        Some(name) => {
                            let v = to_f32_vec(&g.constant(name, node)?).map_err(&unsupported_use)?;
                            v.first().copied().ok_or_else(|| unsupported_use("empty bound".into()))
                        }
                        None => Ok(default),
                    }
                };
                let lo = attr_f(node, "min").map_or_else(|| read_bound(1, f32::NEG_INFINITY), Ok)?;
                let hi = attr_f(node, "max").map_or_else(|| read_bound(2, f32::INFINITY), Ok)?;
                (HeadOpKind::Clip { lo, hi }, len)
            }
            "Gemm" | "MatMul" => {
                if !pooled {
                    return Err(unsupported_use(
                        "multiplies the spatial map before it is pooled".into(),
                    ));
                }
                let is_gemm = node.op_type == "Gemm";
                if is_gemm && attr_i(node, "transA").unwrap_or(0) != 0 {
                    return Err(unsupported_use("transA=1 is not supported".into()));
                }
                if node.input[0] != chain_input {
                    return Err(unsupported_use(
                        "the computed tensor must be the first input (A)".into(),
                    ));
                }
                let b = g.constant(&node.input[1], node)?;
                let shape = b.shape().to_vec();
                let bv = to_f32_vec(&b).map_err(&unsupported_use)?;
                let trans_b = is_gemm && attr_i(node, "transB").unwrap_or(0) != 0;
                let (n_in, n_out) = match (shape.as_slice(), trans_b) {
                    ([k, n], false) => (*k, *n),
                    ([n, k], true) => (*k, *n),
                    _ => return Err(unsupported_use(format!("weight of shape {shape:?}; expected 2-d"))),
                };
                if n_in != len {
                    return Err(unsupported_use(format!(
                        "takes {n_in} inputs but receives {len} values"
                    )));
                }
                let alpha = if is_gemm { attr_f(node, "alpha").unwrap_or(1.0) } else { 1.0 };
                let beta = if is_gemm { attr_f(node, "beta").unwrap_or(1.0) } else { 1.0 };
                let mut weight = vec![0f32; n_in * n_out];
                for o in 0..n_out {
                    for i in 0..n_in {
                        let w = if trans_b { bv[o * n_in + i] } else { bv[i * n_out + o] };
                        weight[o * n_in + i] = alpha * w;
                    }
                }
                let mut bias = vec![0f32; n_out];
                if is_gemm {
                    if let Some(c) = node.input.get(2).filter(|s| !s.is_empty()) {
                        let cv = to_f32_vec(&g.constant(c, node)?).map_err(&unsupported_use)?;
                        match cv.len() {
                            1 => bias.iter_mut().for_each(|b| *b = beta * cv[0]),
                            n if n == n_out => {
                                bias.iter_mut().zip(&cv).for_each(|(b, c)| *b = beta * c)
                            }
                            n => return Err(unsupported_use(format!("bias of {n} values for {n_out} outputs"))),
                        }
                    }
                }
                (HeadOpKind::Dense { n_in, n_out, weight, bias }, n_out)
            }
            "Add" => {
                let other = node
                    .input
                    .iter()
                    .find(|i| g.is_constant(i, 0))
                    .ok_or_else(|| unsupported_use("adds no constant".into()))?;
                let bias = to_f32_vec(&g.constant(other, node)?).map_err(&unsupported_use)?;
                if bias.len() != 1 && bias.len() != len {
                    return Err(unsupported_use(format!(
                        "adds {} values to {len}; only a scalar or a full vector broadcast",
                        bias.len()
                    )));
                }
                if !pooled && bias.len() != 1 {
                    return Err(unsupported_use("adds a tensor to the spatial map".into()));
                }
                (HeadOpKind::AddConst { bias }, len)
            }
            "QuantizeLinear" => {
                let scale = to_f32_vec(&g.constant(&node.input[1], node)?).map_err(&unsupported_use)?;
                let (zp, dt) = match node.input.get(2).filter(|s| !s.is_empty()) {
                    Some(z) => {
                        let t = g.constant(z, node)?;
                        (to_f32_vec(&t).map_err(&unsupported_use)?, t.datum_type())
                    }
                    None => (vec![0.0], DatumType::U8),
                };
                if scale.len() != 1 || zp.len() != 1 {
                    return Err(unsupported_use("per-axis quantisation of activations".into()));
                }
                let (qmin, qmax) = quant_range(dt)
                    .ok_or_else(|| unsupported_use(format!("quantises to {dt:?}")))?;
                (
                    HeadOpKind::Quantize { scale: scale[0], zero_point: zp[0], qmin, qmax },
                    len,
                )
            }
            "DequantizeLinear" => {
                let scale = to_f32_vec(&g.constant(&node.input[1], node)?).map_err(&unsupported_use)?;
                let zp = match node.input.get(2).filter(|s| !s.is_empty()) {
                    Some(z) => to_f32_vec(&g.constant(z, node)?).map_err(&unsupported_use)?,
                    None => vec![0.0],
                };
                if scale.len() != 1 || zp.len() != 1 {
                    return Err(unsupported_use("per-axis dequantisation of activations".into()));
                }
                (HeadOpKind::Dequantize { scale: scale[0], zero_point: zp[0] }, len)
            }
            "Softmax" | "LogSoftmax" | "Sigmoid" => {
                return Err(HeadError::UnsupportedOp {
                    op_type: node.op_type.clone(),
                    node: node.name.clone(),
                    supported: SUPPORTED_OPS,
                    advice: "Grad-CAM targets the pre-softmax logit: name the tensor before the softmax as `outputs.logits`",
                })
            }
            _ => {
                return Err(HeadError::UnsupportedOp {
                    op_type: node.op_type.clone(),
                    node: node.name.clone(),
                    supported: SUPPORTED_OPS,
                    advice: "re-export the model with a standard pooling + linear head, or choose a later target layer",
                })
            }
        };
        head.ops.push(HeadOp {
            op_type: node.op_type.clone(),
            node: node.name.clone(),
            kind,
            len_in: len,
            len_out,
        });
        len = len_out;
        chain_input = node.output[0].as_str();
    }
    if !pooled {
        return Err(HeadError::NoPool {
            target: target.into(),
        });
    }
    if len != logit_count {
        return Err(HeadError::LogitCount {
            name: logits.into(),
            computed: len,
            expected: logit_count,
        });
    }
    Ok(head)
}

fn check_names(g: &Graph<'_>, target: &str, logits: &str) -> Result<(), HeadError> {
    if !g.has_tensor(target) {
        return Err(HeadError::MissingTargetLayer {
            name: target.into(),
            hint: g.hint(target),
        });
    }
    if !g.has_tensor(logits) {
        return Err(HeadError::MissingLogits {
            name: logits.into(),
            hint: g.hint(logits),
        });
    }
    Ok(())
}

/// Checks that a tensor exists in the graph, for errors raised before tract is involved.
pub fn check_tensor_names(model: &ModelProto, target: &str, logits: &str) -> Result<(), HeadError> {
    match Graph::new(model, None) {
        Some(g) => check_names(&g, target, logits),
        None => Err(HeadError::MissingTargetLayer {
            name: target.into(),
            hint: "; the model has no graph".into(),
        }),
    }
}
