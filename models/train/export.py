"""Export the best checkpoint to f32 ONNX with two outputs, `features` (the last conv
block's ReLU6 output, 1280 x S/32 x S/32) and `logits`; head GlobalAveragePool -> Flatten -> Gemm.

    python export.py /work/shared/data/ham10000 [--ckpt checkpoints/best.pt] \
        [--out ../efficientnet-lite0-ham10000/model-f32.onnx] [--no-temperature]

Calibration: a temperature T is fitted on the *validation* split's logits (NLL) and folded
into the Gemm (W/T, b/T). This changes no prediction (argmax is unchanged) and no Grad-CAM
map (the map is scaled by 1/T before its normalisation), only the softmax confidence.
Optionally (--mel-recall-floor) a melanoma logit offset chosen on the validation split is
folded into the Gemm bias: a screening decision rule favouring melanoma sensitivity.
Writes <out>.export.json with T, the offset, the opset and the torch-vs-onnxruntime check."""
import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from common import CLASSES, HERE, MEL, normalise, read_split
from evaluate import bootstrap
from train import build_model, load_cache, metrics, predict


class TwoOutputs(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.extract_features(x)          # ... _conv_head -> _bn1 -> ReLU6 (Clip)
        z = self.net._avg_pooling(f)               # GlobalAveragePool
        z = torch.flatten(z, 1)                    # Flatten
        return f, self.net._fc(z)                  # Gemm (dropout is a no-op in eval)


def fit_temperature(logits, y):
    logt = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([logt], lr=0.1, max_iter=200)
    yt = torch.from_numpy(y)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(logits / logt.exp(), yt)
        loss.backward()
        return loss

    opt.step(closure)
    return float(logt.exp())


def choose_mel_offset(vlog, y, lesions, floor, floor_on):
    """The melanoma logit offset (grid 0..4, step 0.05) with the best validation balanced
    accuracy subject to validation melanoma recall >= floor, where the recall is the point
    estimate (floor_on="point") or the lower 95 % bootstrap bound over lesions
    (floor_on="lower-bound", evaluate.py's bootstrap with 1,000 resamples: the target is met
    with confidence on data like the validation split, not only on its 171 melanomas).
    Returns (offset, metrics, lower bound)."""
    best = None
    for d in np.arange(0, 4.0001, 0.05):
        z = vlog.clone()
        z[:, MEL] += float(d)
        pred = z.argmax(1).numpy()
        met = metrics(y, pred)
        lo = bootstrap(y, pred, lesions, CLASSES, MEL, 1000)["melanoma_sensitivity"][0]
        score = met["mel_recall"] if floor_on == "point" else lo
        ok = score >= floor
        key = (ok, met["balanced_accuracy"] if ok else score)
        if best is None or key > best[0]:
            best = (key, float(d), met, lo)
    return best[1], best[2], best[3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--ckpt", default=os.path.join(HERE, "checkpoints", "best.pt"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "efficientnet-lite0-ham10000", "model-f32.onnx"))
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--no-temperature", action="store_true")
    ap.add_argument("--mel-recall-floor", type=float, default=0.0,
                    help="if > 0: add to the melanoma logit the offset (grid 0..4, step 0.05) that maximises "
                         "validation balanced accuracy subject to validation melanoma recall >= this floor")
    ap.add_argument("--floor-on", choices=["point", "lower-bound"], default="lower-bound",
                    help="apply --mel-recall-floor to the validation recall itself (point) or to the lower "
                         "95%% bootstrap bound over lesions (lower-bound, default)")
    args = ap.parse_args()
    torch.set_num_threads(2)

    ck = torch.load(args.ckpt, weights_only=False, map_location="cpu")
    size = ck["size"]
    net = build_model(size, pretrained=False)
    net.load_state_dict(ck["model"])
    net.eval()
    net = net.to(memory_format=torch.contiguous_format)

    info = {"checkpoint_epoch": ck["epoch"], "size": size, "val_at_checkpoint": ck["val"], "opset": args.opset}
    xva, yva = load_cache(args.data_dir, "val", size)
    if not args.no_temperature:
        vlog = predict(net, xva)
        nll0 = nn.functional.cross_entropy(vlog, torch.from_numpy(yva)).item()
        t = fit_temperature(vlog, yva)
        with torch.no_grad():
            net._fc.weight.div_(t)
            net._fc.bias.div_(t)
        nll1 = nn.functional.cross_entropy(vlog / t, torch.from_numpy(yva)).item()
        info.update(temperature=t, val_nll_before=nll0, val_nll_after=nll1)
        print(f"temperature {t:.4f}: val NLL {nll0:.4f} -> {nll1:.4f}")

    if args.mel_recall_floor > 0:
        vlog = predict(net, xva)  # temperature already folded in
        lesions = [r["lesion_id"] for r in read_split("val")]
        d, met, lo = choose_mel_offset(vlog, yva, lesions, args.mel_recall_floor, args.floor_on)
        with torch.no_grad():
            net._fc.bias[MEL] += d
        info.update(mel_logit_offset=d, mel_recall_floor=args.mel_recall_floor, floor_on=args.floor_on,
                    val_after_offset=met, val_mel_recall_lower_95=lo)
        print(f"melanoma logit offset {d:.2f}: val balanced accuracy {met['balanced_accuracy']:.4f}, "
              f"mel recall {met['mel_recall']:.4f} (bootstrap lower 95 % bound {lo:.4f})")

    wrapper = TwoOutputs(net).eval()
    dummy = torch.zeros(1, 3, size, size)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    raw = args.out + ".raw.onnx"
    torch.onnx.export(wrapper, dummy, raw, dynamo=False, opset_version=args.opset,
                      input_names=["input"], output_names=["features", "logits"],
                      do_constant_folding=True)
    # The TF-"same" ZeroPad2d layers export as Pad nodes fed by a shape-computing subgraph.
    # onnxruntime's basic (ONNX-only) optimisations constant-fold it and merge each Pad into
    # its Conv's (asymmetric) `pads` attribute; the result is Conv/Clip/Add + the head.
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = args.out
    ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])
    os.remove(raw)
    m = onnx.load(args.out)
    keep = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    m.producer_name, m.producer_version = "dermcam models/train/export.py", ""
    onnx.save(m, args.out)
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    info["op_counts"] = ops
    print("ops", ops)

    # torch vs onnxruntime on 64 validation images
    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    x = normalise(xva[:64])
    with torch.no_grad():
        tf, tl = wrapper(torch.from_numpy(x))
    outs = [sess.run(["features", "logits"], {"input": x[i:i + 1]}) for i in range(len(x))]
    of = np.concatenate([o[0] for o in outs])
    ol = np.concatenate([o[1] for o in outs])
    info["check"] = {"max_abs_diff_logits": float(np.abs(ol - tl.numpy()).max()),
                     "max_abs_diff_features": float(np.abs(of - tf.numpy()).max()),
                     "top1_agree": float((ol.argmax(1) == tl.numpy().argmax(1)).mean()),
                     "features_shape": list(of.shape), "logits_shape": list(ol.shape)}
    print(info["check"])
    with open(os.path.splitext(args.out)[0] + ".export.json", "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
