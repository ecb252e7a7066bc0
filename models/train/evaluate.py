"""Evaluate shipped models on a split: the dermcam binary and onnxruntime on the same files.

    # full evaluation (needs target/release/dermcam):
    python evaluate.py /work/shared/data/ham10000 \
        --manifest ../efficientnet-lite0-ham10000/model-f32.toml \
        --manifest ../efficientnet-lite0-ham10000/model-int8.toml
    # onnxruntime only (no dermcam binary):
    python evaluate.py /work/shared/data/ham10000 --engine onnxruntime-only --manifest ... --manifest ...

For each manifest: balanced accuracy (mean per-class recall), per-class recall and precision,
melanoma sensitivity/specificity, confusion matrix, 95% bootstrap intervals (resampling lesions,
the split's grouping unit), ECE and a reliability table, from dermcam (`dermcam infer --json`)
and from onnxruntime with the preprocessing of docs/formats.md; dermcam-vs-onnxruntime top-1
agreement. With two manifests: top-1 agreement between them and the median Pearson correlation
of their Grad-CAM grids (dermcam's `cam`; in onnxruntime-only mode a Grad-CAM computed here from
`features` and the head's Gemm, which for GlobalAveragePool -> Flatten -> Gemm is exact).
Writes results/<tag>.json and results/<tag>.md."""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from PIL import Image

from common import HERE, image_path, read_split

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


# ---------------------------------------------------------------- manifests and preprocessing
def load_manifest(path):
    with open(path, "rb") as f:
        m = tomllib.load(f)
    m["_path"] = os.path.abspath(path)
    m["_model"] = os.path.join(os.path.dirname(m["_path"]), m["model"])
    with open(m["_model"], "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != m["sha256"]:
        sys.exit(f"{path}: sha256 mismatch: manifest {m['sha256']}, file {digest}")
    m["_labels"] = [lab["id"] for lab in m["labels"]]
    return m


def preprocess(path, inp):
    """docs/formats.md: centre square crop of side min(w,h) at floor offsets, PIL BILINEAR resize
    to width x height on the uint8 crop, (x / scale - mean) / std."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        crop = img.crop((x0, y0, x0 + side, y0 + side))
        W, H = inp["width"], inp["height"]
        if (W, H) != (side, side):
            crop = crop.resize((W, H), Image.BILINEAR)
        a = np.asarray(crop, dtype=np.float32)
    a = (a / float(inp.get("scale", 255.0)) - np.array(inp["mean"], np.float32)) / np.array(inp["std"], np.float32)
    if inp.get("layout", "NCHW") == "NCHW":
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a, dtype=np.float32)


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def gemm_weights(model_path, logits_name):
    """(W [classes x channels], b) of the Gemm producing the logits, dequantised if needed."""
    g = onnx.load(model_path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    node = prod[logits_name]
    while node.op_type != "Gemm":
        node = prod[node.input[0]]

    def value(name):
        if name in inits:
            return inits[name].astype(np.float32)
        n = prod[name]
        if n.op_type == "DequantizeLinear":
            q = inits[n.input[0]].astype(np.float32)
            s = inits[n.input[1]].astype(np.float32)
            z = inits[n.input[2]].astype(np.float32) if len(n.input) > 2 and n.input[2] else 0.0
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if np.ndim(s) == 1 and s.size > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                s = s.reshape(shape)
                if np.ndim(z):
                    z = z.reshape(shape)
            return (q - z) * s
        if n.op_type in ("Identity", "Cast"):
            return value(n.input[0])
        raise ValueError(f"cannot read constant {name} ({n.op_type})")

    W = value(node.input[1])
    transb = next((a.i for a in node.attribute if a.name == "transB"), 0)
    if not transb:
        W = W.T
    b = value(node.input[2]) if len(node.input) > 2 else np.zeros(W.shape[0], np.float32)
    return W, b


def run_onnxruntime(m, paths, batch=32):
    sess = ort.InferenceSession(m["_model"], providers=["CPUExecutionProvider"])
    in_name = m["input"].get("name", sess.get_inputs()[0].name)
    tl, ll = m["outputs"]["target_layer"], m["outputs"]["logits"]
    W, _ = gemm_weights(m["_model"], ll)
    b0 = sess.get_inputs()[0].shape[0]
    if isinstance(b0, int):
        batch = b0  # static batch (the shipped models are 1x3xSxS)
    probs, cams = [], []
    for i in range(0, len(paths), batch):
        x = np.stack([preprocess(p, m["input"]) for p in paths[i:i + batch]])
        f, z = sess.run([tl, ll], {in_name: x})
        probs.append(softmax(z.astype(np.float64)))
        top = z.argmax(1)
        # Grad-CAM for GAP -> Flatten -> Gemm: alpha_k = W[c, k] / (H*W); cam = relu(sum_k alpha_k A_k)
        hw = f.shape[2] * f.shape[3]
        cam = np.einsum("nk,nkhw->nhw", W[top] / hw, f)
        cams.append(np.maximum(cam, 0))
    return np.concatenate(probs), np.concatenate(cams)


DECODERS = set()  # JPEG decoders dermcam reported (infer --json "jpeg_decoder")


def run_dermcam(m, paths, binary, batch, jpeg_decoder="auto"):
    probs, cams = [], []
    for i in range(0, len(paths), batch):
        chunk = paths[i:i + batch]
        out = subprocess.run([binary, "infer", "--json", "--jpeg-decoder", jpeg_decoder, "--model", m["_path"], *chunk],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"dermcam failed ({out.returncode}): {out.stderr[-2000:]}")
        recs = {}
        for line in out.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                recs[os.path.abspath(r["path"])] = r
        for p in chunk:
            r = recs.get(os.path.abspath(p))
            if r is None:
                sys.exit(f"dermcam printed no result for {p}")
            if r.get("jpeg_decoder"):
                DECODERS.add(r["jpeg_decoder"])
            probs.append([r["probabilities"][lab] for lab in m["_labels"]])
            c = r["cam"]
            cams.append(np.array(c["values"], np.float64).reshape(c["height"], c["width"]))
        print(f"  dermcam {m['name']} {min(i + batch, len(paths))}/{len(paths)}", file=sys.stderr, flush=True)
    return np.array(probs), np.array(cams)


# ---------------------------------------------------------------- metrics
def confusion(y, pred, k):
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def class_metrics(y, pred, labels, mel):
    k = len(labels)
    cm = confusion(y, pred, k)
    tp = cm.diagonal().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(cm.sum(1) > 0, tp / np.maximum(cm.sum(1), 1), np.nan)
    precision = np.where(cm.sum(0) > 0, tp / np.maximum(cm.sum(0), 1), np.nan)
    out = {"balanced_accuracy": float(np.nanmean(recall)), "accuracy": float(tp.sum() / len(y)),
           "recall": dict(zip(labels, recall.tolist())), "precision": dict(zip(labels, precision.tolist())),
           "confusion": cm.tolist()}
    if mel is not None:
        pos = y == mel
        out["melanoma_sensitivity"] = float((pred[pos] == mel).mean()) if pos.any() else float("nan")
        out["melanoma_specificity"] = float((pred[~pos] != mel).mean()) if (~pos).any() else float("nan")
    return out


def bootstrap(y, pred, groups, labels, mel, n, seed=0):
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    keys = ["balanced_accuracy", "accuracy", "melanoma_sensitivity", "melanoma_specificity"]
    samples = {k: [] for k in keys}
    rec = {lab: [] for lab in labels}
    for _ in range(n):
        pick = np.concatenate([members[g] for g in rng.integers(len(uniq), size=len(uniq))])
        mt = class_metrics(y[pick], pred[pick], labels, mel)
        for k in keys:
            if k in mt:
                samples[k].append(mt[k])
        for lab in labels:
            rec[lab].append(mt["recall"][lab])
    def pct(v):
        return [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]

    ci = {k: pct(v) for k, v in samples.items() if v}
    ci["recall"] = {lab: pct(v) for lab, v in rec.items()}
    return ci


def calibration(y, probs, bins=10):
    conf = probs.max(1)
    pred = probs.argmax(1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.sum() == 0:
            continue
        acc, c = correct[sel].mean(), conf[sel].mean()
        ece += sel.mean() * abs(acc - c)
        table.append({"bin": f"({lo:.1f}, {hi:.1f}]", "n": int(sel.sum()), "mean_confidence": float(c),
                      "accuracy": float(acc)})
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1))))
    onehot = np.eye(probs.shape[1])[y]
    brier = float(np.mean(np.sum((probs - onehot) ** 2, 1)))
    return {"ece": float(ece), "bins": bins, "nll": nll, "brier": brier, "reliability": table}


def pearson(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def summarise(y, probs, groups, labels, n_boot):
    mel = labels.index("mel") if "mel" in labels else None
    pred = probs.argmax(1)
    out = class_metrics(y, pred, labels, mel)
    out["ci95"] = bootstrap(y, pred, groups, labels, mel, n_boot)
    out["calibration"] = calibration(y, probs)
    return out


# ---------------------------------------------------------------- report
def fmt_ci(v, ci):
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def markdown(res):
    L = [f"# Evaluation: {res['split']} split ({res['n_images']} images, {res['n_lesions']} lesions)", "",
         f"Engine: {res['engine']}. Generated {res['generated']} by models/train/evaluate.py "
         f"({res['elapsed_seconds']:.0f} s).", ""]
    if res.get("dermcam_jpeg_decoders"):
        L += [f"dermcam's JPEG decoder: {', '.join(res['dermcam_jpeg_decoders'])} "
              "(onnxruntime's inputs are decoded by Pillow, i.e. libjpeg-turbo).", ""]
    for name, r in res["models"].items():
        labels = r["labels"]
        for eng, mt in r["engines"].items():
            L += [f"## {name} — {eng}", "",
                  f"- balanced accuracy: {fmt_ci(mt['balanced_accuracy'], mt['ci95']['balanced_accuracy'])}",
                  f"- accuracy: {fmt_ci(mt['accuracy'], mt['ci95']['accuracy'])}",
                  f"- melanoma sensitivity: {fmt_ci(mt['melanoma_sensitivity'], mt['ci95']['melanoma_sensitivity'])}",
                  f"- melanoma specificity: {fmt_ci(mt['melanoma_specificity'], mt['ci95']['melanoma_specificity'])}",
                  f"- ECE ({mt['calibration']['bins']} bins, top-1): {mt['calibration']['ece']:.3f}; "
                  f"NLL {mt['calibration']['nll']:.3f}; Brier {mt['calibration']['brier']:.3f}", "",
                  "| class | n | recall [95% CI] | precision |", "|---|---:|---|---:|"]
            cm = np.array(mt["confusion"])
            for i, lab in enumerate(labels):
                L.append(f"| {lab} | {cm[i].sum()} | {fmt_ci(mt['recall'][lab], mt['ci95']['recall'][lab])} | "
                         f"{mt['precision'][lab]:.3f} |")
            L += ["", "Confusion matrix (rows true, columns predicted):", "",
                  "| true \\ pred | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
            for i, lab in enumerate(labels):
                L.append(f"| {lab} | " + " | ".join(str(v) for v in cm[i]) + " |")
            L += ["", "Reliability (top-1 confidence):", "", "| bin | n | mean confidence | accuracy |",
                  "|---|---:|---:|---:|"]
            for b in mt["calibration"]["reliability"]:
                L.append(f"| {b['bin']} | {b['n']} | {b['mean_confidence']:.3f} | {b['accuracy']:.3f} |")
            L.append("")
        if "dermcam_vs_onnxruntime" in r:
            a = r["dermcam_vs_onnxruntime"]
            L += [f"dermcam vs onnxruntime ({name}): top-1 identical on {a['top1_agreement']:.4f} "
                  f"({a['n_disagree']} differ); max |Δp| {a['max_abs_prob_diff']:.4g}, "
                  f"median Grad-CAM r {a['median_cam_pearson']:.4f}", ""]
    for pair, a in res.get("pairs", {}).items():
        L += [f"## {pair}", "", f"- top-1 agreement: {a['top1_agreement']:.4f} ({a['n_disagree']} differ) [{a['source']}]",
              f"- Grad-CAM Pearson r: median {a['median_cam_pearson']:.4f}, 5th percentile {a['p05_cam_pearson']:.4f} "
              f"({a['cam_source']})", ""]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", help="directory holding the images (<image_id>.jpg)")
    ap.add_argument("--split", default="test", help="split name (splits/<name>.csv) or a csv path")
    ap.add_argument("--manifest", action="append", required=True, help="model manifest; give two to compare")
    ap.add_argument("--engine", default="dermcam", choices=["dermcam", "onnxruntime-only"])
    ap.add_argument("--dermcam", default=os.path.join(REPO, "target", "release", "dermcam"))
    ap.add_argument("--batch", type=int, default=256, help="images per dermcam call")
    ap.add_argument("--jpeg-decoder", default="auto", choices=["auto", "libjpeg-turbo", "zune-jpeg"],
                    help="dermcam infer --jpeg-decoder")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--tag", default=None, help="output name (results/<tag>.json|.md)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--lossless", metavar="DIR", default=None,
                    help="decode every image once with PIL and save it as PNG in DIR (outside the "
                         "repo), then give both engines the PNGs: separates JPEG-decoder differences "
                         "(PIL's libjpeg vs dermcam's zune-jpeg) from preprocessing and inference")
    args = ap.parse_args()

    t0 = time.time()
    rows = read_split(args.split)
    paths = [image_path(args.data_dir, r["image_id"]) for r in rows]
    if args.lossless:
        from PIL import Image
        os.makedirs(args.lossless, exist_ok=True)
        lossless = []
        for p in paths:
            out = os.path.join(args.lossless, os.path.splitext(os.path.basename(p))[0] + ".png")
            if not os.path.exists(out):
                Image.open(p).convert("RGB").save(out)
            lossless.append(out)
        paths = lossless
    groups = np.array([r["lesion_id"] for r in rows])
    manifests = [load_manifest(p) for p in args.manifest]
    res = {"split": args.split, "n_images": len(rows), "n_lesions": int(len(set(groups))), "engine": args.engine,
           "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "models": {}}
    outputs = {}
    for m in manifests:
        key = os.path.basename(m["_path"])
        labels = m["_labels"]
        y = np.array([labels.index(r["dx"]) for r in rows])
        r = {"manifest": os.path.relpath(m["_path"], REPO), "sha256": m["sha256"], "labels": labels, "engines": {}}
        print(f"onnxruntime {key} ...", file=sys.stderr, flush=True)
        p_ort, cam_ort = run_onnxruntime(m, paths)
        r["engines"]["onnxruntime"] = summarise(y, p_ort, groups, labels, args.bootstrap)
        outputs[key] = {"onnxruntime": (p_ort, cam_ort)}
        if args.engine == "dermcam":
            if not os.access(args.dermcam, os.X_OK):
                sys.exit(f"no dermcam binary at {args.dermcam} (build it, or use --engine onnxruntime-only)")
            p_dc, cam_dc = run_dermcam(m, paths, args.dermcam, args.batch, args.jpeg_decoder)
            r["engines"]["dermcam"] = summarise(y, p_dc, groups, labels, args.bootstrap)
            outputs[key]["dermcam"] = (p_dc, cam_dc)
            agree = p_dc.argmax(1) == p_ort.argmax(1)
            cams = [pearson(a, b) for a, b in zip(cam_dc, cam_ort)] if cam_dc.shape == cam_ort.shape else []
            r["dermcam_vs_onnxruntime"] = {
                "top1_agreement": float(agree.mean()), "n_disagree": int((~agree).sum()),
                "disagreeing": [rows[i]["image_id"] for i in np.flatnonzero(~agree)][:50],
                "max_abs_prob_diff": float(np.abs(p_dc - p_ort).max()),
                "median_cam_pearson": float(np.nanmedian(cams)) if cams else float("nan")}
        res["models"][key] = r
    if len(manifests) == 2:
        (ka, oa), (kb, ob) = list(outputs.items())
        src = "dermcam" if args.engine == "dermcam" else "onnxruntime"
        pa, ca = oa[src]
        pb, cb = ob[src]
        agree = pa.argmax(1) == pb.argmax(1)
        rs = np.array([pearson(a, b) for a, b in zip(ca, cb)])
        res["pairs"] = {f"{ka} vs {kb}": {
            "source": src, "cam_source": "dermcam cam grids" if src == "dermcam" else
            "Grad-CAM from onnxruntime features x Gemm weights (each model's own top class)",
            "top1_agreement": float(agree.mean()), "n_disagree": int((~agree).sum()),
            "median_cam_pearson": float(np.nanmedian(rs)), "p05_cam_pearson": float(np.nanpercentile(rs, 5)),
            "n_cam_undefined": int(np.isnan(rs).sum())}}
    res["elapsed_seconds"] = time.time() - t0
    res["dermcam_jpeg_decoders"] = sorted(DECODERS)
    tag = args.tag or f"{os.path.splitext(os.path.basename(args.split))[0]}-{args.engine}"
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, f"{tag}.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(args.out_dir, f"{tag}.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
