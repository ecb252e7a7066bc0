"""Static int8 quantisation of the f32 model with onnxruntime, QDQ format, calibrated on
training images preprocessed exactly as dermcam does.

    python quantize.py /work/shared/data/ham10000 [--f32 ../efficientnet-lite0-ham10000/model-f32.onnx] \
        [--out ../efficientnet-lite0-ham10000/model-int8.onnx] [--n-calib 200] [--method minmax]

Weights int8 symmetric per output channel (tract 0.23.9 honours per-axis scales), activations
uint8 asymmetric per tensor. Inside the body each ReLU6 (Clip) after a conv is folded into the
conv output's quantisation range (uint8 on [0, max]): keeping it as its own node behind a QDQ pair
on the raw conv output costs ~4x resolution on every activation. The head stays float: the Clip
producing `features` (so `features` is exactly the ReLU6 output), GlobalAveragePool, Flatten, Gemm. Checks output names, the head chain, the file size and
the int8-vs-f32 top-1 agreement on the *validation* split; writes <out>.quant.json."""
import argparse
import json
import os
import random

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from common import CLASSES, HERE, image_path, load_image_uint8, normalise, read_split

MODEL_DIR = os.path.join(HERE, "..", "efficientnet-lite0-ham10000")


class Reader(CalibrationDataReader):
    def __init__(self, batches):
        self.it = iter(batches)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"input": x}


def head_ops(model, target="features", logits="logits"):
    """Op types of the nodes that are downstream of `target` and upstream of `logits`, in graph order."""
    nodes = list(model.graph.node)
    down = {target}
    down_nodes = set()
    for i, n in enumerate(nodes):  # ONNX graphs are topologically sorted
        if any(t in down for t in n.input):
            down_nodes.add(i)
            down.update(n.output)
    up = {logits}
    up_nodes = set()
    for i in reversed(range(len(nodes))):
        n = nodes[i]
        if any(t in up for t in n.output):
            up_nodes.add(i)
            up.update(n.input)
    return [nodes[i].op_type for i in sorted(down_nodes & up_nodes)]


def head_nodes(model, target="features", logits="logits"):
    """Names of the node producing `target` and of the nodes from `target` to `logits`."""
    prod = {o: n for n in model.graph.node for o in n.output}
    names, t = [], logits
    while t != target:
        n = prod[t]
        names.append(n.name)
        t = n.input[0]
    return [prod[target].name] + names[::-1]


def run(path, x, batch=64):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    b0 = sess.get_inputs()[0].shape[0]
    if isinstance(b0, int):
        batch = b0  # static batch (the shipped models are 1x3xSxS)
    fs, ls = [], []
    for i in range(0, len(x), batch):
        f, l = sess.run(["features", "logits"], {"input": x[i:i + batch]})
        fs.append(f)
        ls.append(l)
    return np.concatenate(fs), np.concatenate(ls)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--f32", default=os.path.join(MODEL_DIR, "model-f32.onnx"))
    ap.add_argument("--out", default=os.path.join(MODEL_DIR, "model-int8.onnx"))
    ap.add_argument("--n-calib", type=int, default=200)
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    ap.add_argument("--quantize-head", action="store_true",
                    help="also quantise the head (default: the features Clip, GlobalAveragePool, Flatten and Gemm stay float)")
    ap.add_argument("--keep-activations", action="store_true",
                    help="keep every Clip (ReLU6) as its own node with its own QDQ pair (less accurate)")
    ap.add_argument("--float-depthwise", action="store_true",
                    help="keep the depthwise convs (and so their inputs/outputs) float: they are the most "
                         "quantisation-sensitive layers of MobileNet-style nets and hold few weights")
    ap.add_argument("--float-first", type=int, default=0, help="keep the first N Conv nodes float")
    ap.add_argument("--val-limit", type=int, default=0, help="check agreement on the first N val images only")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    m = onnx.load(args.f32)
    size = m.graph.input[0].type.tensor_type.shape.dim[2].dim_value

    # calibration: a class-stratified random sample of training images
    rows = read_split("train")
    rng = random.Random(args.seed)
    by = {c: [r for r in rows if r["dx"] == c] for c in CLASSES}
    per = {c: max(8, round(args.n_calib * len(v) / len(rows))) for c, v in by.items()}
    while sum(per.values()) > args.n_calib:
        per["nv"] -= 1
    calib = [r for c in CLASSES for r in rng.sample(by[c], per[c])]
    x = normalise(np.stack([load_image_uint8(image_path(args.data_dir, r["image_id"]), size) for r in calib]))
    batches = [x[i:i + 1] for i in range(len(x))]

    pre = args.out + ".pre.onnx"
    quant_pre_process(args.f32, pre, skip_optimization=True, skip_symbolic_shape=True)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[args.method]
    pm = onnx.load(pre)
    exclude = [] if args.quantize_head else head_nodes(pm)
    convs = [n for n in pm.graph.node if n.op_type == "Conv"]
    exclude += [n.name for n in convs[:args.float_first]]
    if args.float_depthwise:
        exclude += [n.name for n in convs
                    if next((a.i for a in n.attribute if a.name == "group"), 1) > 1 and n.name not in exclude]
    quantize_static(pre, args.out, Reader(batches), quant_format=QuantFormat.QDQ, nodes_to_exclude=exclude,
                    per_channel=not args.per_tensor, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=method,
                    extra_options={"QDQKeepRemovableActivations": args.keep_activations, "WeightSymmetric": True,
                                   "ActivationSymmetric": False})
    os.remove(pre)

    q = onnx.load(args.out)
    outs = [o.name for o in q.graph.output]
    assert outs == ["features", "logits"], outs
    info = {"calibration_images": len(calib), "calibration_per_class": per, "method": args.method,
            "per_channel": not args.per_tensor, "float_nodes": exclude, "activation_type": "uint8", "weight_type": "int8",
            "size_bytes": os.path.getsize(args.out), "f32_size_bytes": os.path.getsize(args.f32),
            "head_ops_f32": head_ops(m), "head_ops_int8": head_ops(q)}
    ops = {}
    for n in q.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    info["op_counts"] = ops

    # agreement on the validation split (never the test split here)
    vrows = read_split("val")
    if args.val_limit:
        vrows = vrows[:args.val_limit]
    xv = normalise(np.stack([load_image_uint8(image_path(args.data_dir, r["image_id"]), size) for r in vrows]))
    yv = np.array([CLASSES.index(r["dx"]) for r in vrows])
    ff, fl = run(args.f32, xv)
    qf, ql = run(args.out, xv)
    agree = float((fl.argmax(1) == ql.argmax(1)).mean())

    def bacc(pred):
        return float(np.mean([(pred[yv == k] == k).mean() for k in range(len(CLASSES))]))

    info["val"] = {"top1_agreement": agree, "balanced_accuracy_f32": bacc(fl.argmax(1)),
                   "balanced_accuracy_int8": bacc(ql.argmax(1)),
                   "max_abs_logit_diff": float(np.abs(fl - ql).max()),
                   "features_rel_err": float(np.linalg.norm(ff - qf) / np.linalg.norm(ff))}
    print(json.dumps(info, indent=1))
    with open(os.path.splitext(args.out)[0] + ".quant.json", "w") as f:
        json.dump(info, f, indent=1)
    if info["size_bytes"] > 6 * 1024 * 1024:
        raise SystemExit(f"int8 file is {info['size_bytes']} bytes > 6 MiB")


if __name__ == "__main__":
    main()
