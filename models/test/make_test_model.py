#!/usr/bin/env python3
"""make_test_model.py -- dermcam's tiny TEST model, head fixtures and golden Grad-CAM data.

What it makes (all paths relative to the repository root; nothing else is written):

  models/test/tiny-f32.onnx  (+ .toml manifest)   tiny EfficientNet-Lite-like CNN, input `input`
                                                   1x3x64x64 NCHW f32, outputs `features`
                                                   (1x32x8x8, ReLU6 output of the last conv block)
                                                   and `logits` (1x7, HAM10000 classes); head =
                                                   GlobalAveragePool -> Flatten -> Gemm.
  models/test/tiny-int8.onnx (+ .toml)             QDQ int8 (onnxruntime quantize_static, per-channel
                                                   QInt8 weights), same input/output names.
  tests/fixtures/models/head-mlp.onnx (+ .toml)    random-init model, head GAP->Flatten->Gemm->Relu->Gemm
  tests/fixtures/models/head-matmul-clip.onnx      head ReduceMean->MatMul->Add->Clip->MatMul->Add
  tests/fixtures/models/head-unsupported.onnx      head GlobalMaxPool->Flatten->Gemm (must be refused)
  tests/golden/images/synth-{0,1,2}.png            synthetic dermatoscope-like 640x480 frames
  tests/golden/gradcam/*.json                      pytorch-grad-cam goldens (GradCAM +
                                                   ClassifierOutputTarget) for tiny-f32, head-mlp,
                                                   head-matmul-clip; tiny-int8 logits + python
                                                   int8 CAM and its Pearson vs the f32 golden
  tests/golden/colormaps.json                      JET (OpenCV) and inferno (matplotlib) LUTs
  tests/golden/preprocess/*.json                   crop + resize + normalise reference tensors

No HAM10000 image is ever written to the repository (only weights trained on them, and the
64 calibration tensors stay in memory).

Preprocessing (must match the Rust side exactly): centre square crop of side s = min(w, h) at
x = floor((w - s) / 2), y = floor((h - s) / 2); PIL `Image.resize((64, 64), Image.BILINEAR)`
(antialiased triangle filter) on the uint8 RGB crop; then in float32, in this order:
x = ((pixel_f32 / 255.0) - mean) / std, mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225].

How to run (from the repository root; CPU only; ~6-7 min wall with training on 2 busy cores
(8 epochs, ~50 s each), ~20 s without):

    nice -n 5 /opt/dermcam-py/bin/python models/test/make_test_model.py \
        --ham10000 /work/shared/data/ham10000          # train the tiny model on HAM10000
    nice -n 5 /opt/dermcam-py/bin/python models/test/make_test_model.py   # seeded random init

Requirements: models/test/requirements.txt (exact versions used). Everything is seeded
(numpy default_rng, torch.manual_seed, deterministic algorithms, fixed thread count), so a
rerun on the same machine/library versions reproduces the same bytes; training results can
differ across CPUs/BLAS builds, in which case the goldens are regenerated consistently with
the new weights (they are all produced by this one script from the same run).
"""

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

SEED = 20261204
SIZE = 64
OPSET = 13
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LABELS = [
    ("akiec", "Actinic keratosis / intraepithelial carcinoma"),
    ("bcc", "Basal cell carcinoma"),
    ("bkl", "Benign keratosis-like lesion"),
    ("df", "Dermatofibroma"),
    ("mel", "Melanoma"),
    ("nv", "Melanocytic nevus"),
    ("vasc", "Vascular lesion"),
]
NCLS = len(LABELS)
FEAT_C = 32

REPO = Path(__file__).resolve().parents[2]


def rel(p):
    return str(Path(p).resolve().relative_to(REPO))


def seed_all(seed):
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- preprocessing
def centre_crop_box(w, h):
    side = min(w, h)
    return (w - side) // 2, (h - side) // 2, side, side


def preprocess_pil(img):
    """uint8 RGB PIL image -> (float32 1x3x64x64 tensor, crop box, resized uint8 HxWx3)."""
    img = img.convert("RGB")
    x, y, cw, ch = centre_crop_box(*img.size)
    crop = img.crop((x, y, x + cw, y + ch))
    small = np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)
    f = small.astype(np.float32) / np.float32(255.0)
    f = (f - MEAN) / STD
    t = np.ascontiguousarray(f.transpose(2, 0, 1)[None]).astype(np.float32)
    return t, (x, y, cw, ch), small


def normalise_u8_batch(u8):
    """N x 64 x 64 x 3 uint8 -> N x 3 x 64 x 64 float32, same arithmetic as preprocess_pil."""
    f = u8.astype(np.float32) / np.float32(255.0)
    f = (f - MEAN) / STD
    return np.ascontiguousarray(f.transpose(0, 3, 1, 2))


# ----------------------------------------------------------------------------- synthetic images
def synth_image(i):
    """Deterministic dermatoscope-like 640x480 RGB frame (uint8 HxWx3)."""
    rng = np.random.default_rng(SEED + 100 + i)
    H, W = 480, 640
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    skin = np.array([[222, 178, 150], [205, 160, 128], [232, 190, 165]][i % 3], np.float32)
    # low-frequency mottling + a little fine grain
    coarse = rng.normal(0, 1, (12, 16, 3)).astype(np.float32)
    coarse = 0.85 * coarse[..., :1] + 0.5 * coarse  # mostly luminance, a little chroma
    mott = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    medium = rng.normal(0, 1, (60, 80, 1)).astype(np.float32)
    grain = cv2.resize(medium, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    img = skin[None, None, :] + 9.0 * mott + 4.0 * grain
    # pores: sparse small darker dots
    pores = np.zeros((H, W), np.uint8)
    for _ in range(900):
        cv2.circle(pores, (int(rng.integers(0, W)), int(rng.integers(0, H))), 1, 255, -1)
    img = img - 14.0 * (pores.astype(np.float32) / 255.0)[..., None]
    # irregular dark blob, offset from centre
    cx = W / 2 + [70, -85, 40][i]
    cy = H / 2 + [-40, 35, 60][i]
    r0 = [95, 80, 70][i]
    th = np.arctan2(yy - cy, xx - cx)
    rr = np.hypot(xx - cx, yy - cy)
    rad = np.full_like(th, r0)
    for k in range(2, 7):
        rad += r0 * rng.uniform(0.03, 0.10) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    inside = np.clip((rad - rr) / 8.0 + 0.5, 0.0, 1.0)[..., None]  # soft edge
    core = np.clip(1.0 - rr / (rad + 1e-3), 0, 1)[..., None]
    lesion = np.array([[92, 58, 42], [70, 45, 38], [110, 70, 55]][i], np.float32)
    lesion = lesion[None, None, :] - 35.0 * core + 10.0 * mott
    img = img * (1 - inside) + lesion * inside
    # a couple of dark hair lines (quadratic Bezier curves, anti-aliased)
    hair = np.zeros((H, W), np.uint8)
    for _ in range(2):
        p0, p1, p2 = (rng.uniform([0, 0], [W, H]) for _ in range(3))
        t = np.linspace(0, 1, 200)[:, None]
        pts = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2).astype(np.int32)
        cv2.polylines(hair, [pts.reshape(-1, 1, 2)], False, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
    a = (hair.astype(np.float32) / 255.0)[..., None] * 0.85
    img = img * (1 - a) + np.array([38, 28, 24], np.float32) * a
    # dark circular vignette of the dermatoscope lens
    rv = np.hypot(xx - W / 2, yy - H / 2)
    R = 0.5 * math.hypot(W, H) * 0.78
    v = np.clip(1.0 - (rv - 0.75 * R) / (0.25 * R), 0.0, 1.0) ** 1.5
    img = img * v[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- models
def cbr(cin, cout, k, s, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class MBConv(nn.Module):
    """EfficientNet-Lite MBConv (no squeeze-excite, ReLU6); expand=1 is depthwise-separable."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        layers = [] if expand == 1 else [cbr(cin, mid, 1, 1)]
        layers += [cbr(mid, mid, 3, stride, groups=mid),
                   nn.Conv2d(mid, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def make_backbone():
    return nn.Sequential(
        cbr(3, 16, 3, 2),        # stem conv-BN-ReLU6, 32x32
        MBConv(16, 24, 2, 1),    # depthwise-separable (dw3x3-BN-ReLU6, pw1x1-BN), 16x16
        MBConv(24, 40, 2, 3),    # MBConv expand 3 (pw-dw-pw), 8x8
        cbr(40, FEAT_C, 1, 1),   # last conv block -> `features` (ReLU6 output), 32x8x8
    )


class GapHead(nn.Module):
    def __init__(self, dropout=0.2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(FEAT_C, NCLS)

    def forward(self, f):
        return self.fc(self.dropout(self.flatten(self.pool(f))))


class MlpHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(FEAT_C, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, NCLS)

    def forward(self, f):
        return self.fc2(self.relu(self.fc1(self.flatten(self.pool(f)))))


class MatMulClipHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(FEAT_C, 16) * 0.5)
        self.b1 = nn.Parameter(torch.zeros(16))
        self.w2 = nn.Parameter(torch.randn(16, NCLS) * 0.5)
        self.b2 = nn.Parameter(torch.randn(NCLS) * 0.1)

    def forward(self, f):
        p = f.mean(dim=(2, 3))                      # ReduceMean axes=[2,3] keepdims=0
        h = torch.clamp(torch.matmul(p, self.w1) + self.b1, 0.0, 6.0)   # MatMul, Add, Clip
        return torch.matmul(h, self.w2) + self.b2   # MatMul, Add


class MaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1)  # exported as MaxPool; rewritten to GlobalMaxPool
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(FEAT_C, NCLS)

    def forward(self, f):
        return self.fc(self.flatten(self.pool(f)))


class Net(nn.Module):
    """forward() returns logits only (what pytorch-grad-cam needs)."""

    def __init__(self, head):
        super().__init__()
        self.features = make_backbone()
        self.head = head

    @property
    def target_layer(self):
        return self.features[-1]  # module whose output is the ONNX tensor `features`

    def forward(self, x):
        return self.head(self.features(x))


class ExportBoth(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.features(x)
        return f, self.net.head(f)


def calibrate_bn(net, batches):
    """Random-init models: set BN running stats from synthetic data (cumulative average)."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for b in batches:
            net(b)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            # near-constant channels (few calibration images) would get a huge folded scale
            # that amplifies float rounding differences between torch and onnxruntime
            m.running_var.clamp_(min=0.05)
    net.eval()


# ----------------------------------------------------------------------------- ONNX helpers
def export_onnx(net, path, fix_maxpool=False):
    # the wrapper must be in eval mode too: the exporter restores the wrapper's original mode
    # afterwards, recursively, which would otherwise put `net` (its BN layers) in train mode
    wrapper = ExportBoth(net).eval()
    torch.onnx.export(
        wrapper, torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False,
        opset_version=OPSET, input_names=["input"], output_names=["features", "logits"],
        do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
    )
    assert not any(m.training for m in net.modules())
    m = onnx.load(str(path))
    if fix_maxpool:
        for i, n in enumerate(m.graph.node):
            if n.op_type == "MaxPool":
                m.graph.node[i].CopyFrom(helper.make_node("GlobalMaxPool", list(n.input),
                                                          list(n.output), name=n.name or "gmp"))
    m.producer_name = "dermcam make_test_model.py"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    ops = [n.op_type for n in m.graph.node]
    assert "BatchNormalization" not in ops and "Dropout" not in ops, ops
    return m


def head_ops(model, start="features", end="logits"):
    """Op types of the nodes on any path from tensor `start` to tensor `end`, in graph order."""
    nodes = list(model.graph.node)
    fwd = {start}
    fwd_nodes = set()
    for i, n in enumerate(nodes):  # graph is topologically sorted
        if any(t in fwd for t in n.input):
            fwd_nodes.add(i)
            fwd.update(n.output)
    bwd = {end}
    bwd_nodes = set()
    for i in reversed(range(len(nodes))):
        n = nodes[i]
        if any(t in bwd for t in n.output):
            bwd_nodes.add(i)
            bwd.update(n.input)
    return [nodes[i].op_type for i in sorted(fwd_nodes & bwd_nodes)]


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(sess, x):
    f, lg = sess.run(["features", "logits"], {"input": x})
    return f, lg


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def toml_str(s):
    return json.dumps(s)  # TOML basic strings accept JSON string escapes


def write_manifest(onnx_path, name, precision, ops, provenance):
    onnx_path = Path(onnx_path)
    lines = [
        f"# generated by models/test/make_test_model.py -- do not edit by hand",
        f"name = {toml_str(name)}",
        'version = "0.1.0"',
        f"model = {toml_str(onnx_path.name)}",
        f'sha256 = "{sha256(onnx_path)}"',
        f'precision = "{precision}"',
        "",
        "[input]",
        'name = "input"',
        f"width = {SIZE}",
        f"height = {SIZE}",
        'layout = "NCHW"',
        "scale = 255.0",
        "mean = [0.485, 0.456, 0.406]",
        "std = [0.229, 0.224, 0.225]",
        "",
        "[outputs]",
        'target_layer = "features"',
        'logits = "logits"',
        "",
        "[head]",
        "ops = [" + ", ".join(toml_str(o) for o in ops) + "]",
        "",
    ]
    for lid, lname in LABELS:
        lines += ["[[labels]]", f"id = {toml_str(lid)}", f"name = {toml_str(lname)}", ""]
    lines.append("[provenance]")
    for k, v in provenance.items():
        lines.append(f"{k} = {toml_str(v)}")
    onnx_path.with_suffix(".toml").write_text("\n".join(lines) + "\n")


def fl(a):
    """float32 array -> list of Python floats (exact float32 values, full repr in JSON)."""
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def dump_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, separators=(",", ":"))
        fh.write("\n")


def pearson(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


# ----------------------------------------------------------------------------- HAM10000
def load_ham10000(root):
    root = Path(root)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    ids = [r["image_id"] for r in rows]
    ys = np.array([[l for l, _ in LABELS].index(r["dx"]) for r in rows], np.int64)
    lesions = [r["lesion_id"] for r in rows]
    u8 = np.empty((len(ids), SIZE, SIZE, 3), np.uint8)
    t0 = time.time()
    for i, iid in enumerate(ids):
        with Image.open(root / f"{iid}.jpg") as im:
            _, _, small = preprocess_pil(im)
        u8[i] = small
    print(f"[ham10000] {len(ids)} images decoded+preprocessed in {time.time() - t0:.1f}s")
    # lesion-grouped split (HAM10000 has several images of the same lesion)
    ul = sorted(set(lesions))
    rng = np.random.default_rng(SEED)
    val_lesions = set(rng.choice(ul, size=int(0.15 * len(ul)), replace=False).tolist())
    is_val = np.array([l in val_lesions for l in lesions])
    return u8, ys, is_val


def evaluate(net, u8, ys):
    net.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(ys), 512):
            preds.append(net(torch.from_numpy(normalise_u8_batch(u8[s:s + 512]))).argmax(1).numpy())
    p = np.concatenate(preds)
    acc = float((p == ys).mean())
    recalls = [float((p[ys == c] == c).mean()) for c in range(NCLS) if (ys == c).any()]
    return acc, float(np.mean(recalls)), recalls


def train(net, u8, ys, is_val, epochs, batch=128):
    tr = np.where(~is_val)[0]
    counts = np.bincount(ys[tr], minlength=NCLS).astype(np.float64)
    w = counts.sum() / (NCLS * counts)
    print(f"[train] {len(tr)} train / {int(is_val.sum())} val images; class counts {counts.astype(int).tolist()}")
    lossf = nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=4e-3, weight_decay=1e-4)
    steps = epochs * (len(tr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(SEED + 1)
    net.to(memory_format=torch.channels_last)  # ~1.5x faster on CPU
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        perm = rng.permutation(tr)
        tot = 0.0
        for s in range(0, len(perm) - batch + 1, batch):
            idx = np.sort(perm[s:s + batch])
            xb = normalise_u8_batch(u8[idx])
            hf = rng.random(batch) < 0.5
            vf = rng.random(batch) < 0.5
            xb[hf] = xb[hf][:, :, :, ::-1]
            xb[vf] = xb[vf][:, :, ::-1, :]
            xb = torch.from_numpy(np.ascontiguousarray(xb)).to(memory_format=torch.channels_last)
            loss = lossf(net(xb), torch.from_numpy(ys[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * batch
        va = evaluate(net, u8[is_val], ys[is_val])
        print(f"[train] epoch {ep + 1}/{epochs} loss {tot / len(tr):.4f} val acc {va[0]:.3f} "
              f"val bal-acc {va[1]:.3f}  ({time.time() - t0:.0f}s)", flush=True)
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    tra = evaluate(net, u8[tr], ys[tr])
    va = evaluate(net, u8[is_val], ys[is_val])
    return {"train_acc": tra[0], "train_bal_acc": tra[1], "val_acc": va[0], "val_bal_acc": va[1],
            "val_recall_per_class": dict(zip([l for l, _ in LABELS], va[2])),
            "epochs": epochs, "train_seconds": round(time.time() - t0, 1)}


# ----------------------------------------------------------------------------- Grad-CAM goldens
def gradcam_case(net, model_rel, onnx_sess, image_rel, x_np, target, out_path, notes):
    x = torch.from_numpy(x_np)
    net.eval()
    with torch.no_grad():
        logits_t = net(x).numpy()[0]
    _, logits_o = ort_run(onnx_sess, x_np)
    logits_o = logits_o[0]
    argmax = int(np.argmax(logits_t))
    assert argmax == int(np.argmax(logits_o))
    if target is None:
        target = argmax
    layer = net.target_layer
    targets = [ClassifierOutputTarget(target)]
    cam = GradCAM(model=net, target_layers=[layer])
    up = cam(input_tensor=x, targets=targets)[0]  # exactly what users get (64x64)
    # library's own grid-resolution map: same code path with the target size = grid size
    acts = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    gh, gw = acts.shape[2:]
    cam.get_target_width_height = lambda _t: (gw, gh)
    grid = cam.compute_cam_per_layer(x, targets, False)[0][0, 0]
    raw = np.maximum(cam.get_cam_image(x, layer, targets, acts, grads), 0)
    grid2 = scale_cam_image(raw)[0]  # target_size=None: no resize at all
    assert np.array_equal(grid, grid2)
    alpha_lib = np.mean(grads, axis=(2, 3))[0]
    cam.activations_and_grads.release()
    del cam
    # independent cross-check: own hook + autograd + numpy
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    out = net(x)
    h.remove()
    A = store["a"]
    g = torch.autograd.grad(out[0, target], A)[0]
    A = A.detach().numpy()[0]
    alpha = g.numpy()[0].mean(axis=(1, 2))
    mine = np.maximum((alpha[:, None, None] * A).sum(0), 0).astype(np.float32)
    mine = mine - mine.min()
    mine = mine / (1e-7 + mine.max())
    d = float(np.abs(mine - grid).max())
    assert d < 1e-6, d
    assert np.abs(A - acts[0]).max() == 0
    f_onnx, _ = ort_run(onnx_sess, x_np)
    fdiff = float(np.abs(f_onnx[0] - A).max())
    ldiff = float(np.abs(logits_t - logits_o).max())
    if float(grid.max()) == 0.0:
        print(f"  WARNING {out_path.name}: CAM is all zero")
    obj = {
        "model": model_rel, "image": image_rel, "input_shape": [1, 3, SIZE, SIZE],
        "input": fl(x_np),
        "target_class": int(target), "target_label": LABELS[target][0],
        "target_is_argmax": bool(target == argmax),
        "logits_torch": fl(logits_t), "logits_onnxruntime": fl(logits_o),
        "alpha": fl(alpha_lib),
        "cam_grid": {"height": int(gh), "width": int(gw), "values": fl(grid)},
        "cam_upsampled": {"height": int(up.shape[0]), "width": int(up.shape[1]), "values": fl(up)},
        "notes": notes + " alpha = mean over (i,j) of d logit[target] / d features[k,i,j] "
                 "(pytorch-grad-cam grads). cam_grid = max(sum_k alpha_k A_k, 0), then x -= min; "
                 "x /= (1e-7 + max) (scale_cam_image, no resize). cam_upsampled = "
                 "GradCAM(...)(input_tensor, [ClassifierOutputTarget(target)])[0]: the grid map "
                 "cv2.resize'd (bilinear, half-pixel centres) to 64x64, clamped at 0 and "
                 "min/max-normalised again.",
    }
    dump_json(out_path, obj)
    print(f"  {out_path.name}: target {target} ({LABELS[target][0]}) argmax={target == argmax} "
          f"|logits torch-ort|max {ldiff:.2e} |features torch-ort|max {fdiff:.2e} "
          f"lib-vs-numpy cam {d:.1e}")
    return {"logits_diff": ldiff, "grid": grid, "up": up, "target": target, "argmax": argmax,
            "file": out_path.name}


def non_argmax_class(logits, preferred):
    a = int(np.argmax(logits))
    for c in preferred:
        if c != a:
            return c


# ----------------------------------------------------------------------------- int8
class Reader:
    def __init__(self, xs):
        self.it = iter([{"input": x[None]} for x in xs])

    def get_next(self):
        return next(self.it, None)


def quantise(f32_path, int8_path, calib, method):
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    quantize_static(
        str(f32_path), str(int8_path), Reader(calib), quant_format=QuantFormat.QDQ,
        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, method),
    )
    m = onnx.load(str(int8_path))
    outs = [o.name for o in m.graph.output]
    assert outs == ["features", "logits"], outs
    m.producer_name = "dermcam make_test_model.py (onnxruntime quantize_static QDQ)"
    onnx.save(m, str(int8_path))
    return m


def int8_gemm_weights(m):
    """Dequantised [NCLS, C] weight matrix of the head Gemm of a QDQ model."""
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert len(gemm) == 1
    gemm = gemm[0]
    dq = prod[gemm.input[1]]
    assert dq.op_type == "DequantizeLinear"
    w = inits[dq.input[0]].astype(np.float32)
    s = inits[dq.input[1]].astype(np.float32)
    zp = inits[dq.input[2]].astype(np.float32) if len(dq.input) > 2 else np.zeros_like(s)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if s.ndim == 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    wd = (w - zp) * s
    transb = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    return wd if transb else wd.T


def int8_cam(features, wd, target):
    A = features[0]
    hw = A.shape[1] * A.shape[2]
    alpha = wd[target] / hw
    c = np.maximum((alpha[:, None, None] * A).sum(0), 0).astype(np.float32)
    c = c - c.min()
    return (c / (1e-7 + c.max())).astype(np.float32), alpha


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ham10000", type=Path, help="HAM10000 dir (ISIC_*.jpg + labels.csv): train")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--calib", default="MinMax", help="onnxruntime CalibrationMethod name")
    args = ap.parse_args()

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    seed_all(SEED)

    mdir = REPO / "models/test"
    fdir = REPO / "tests/fixtures/models"
    gdir = REPO / "tests/golden"
    for d in (mdir, fdir, gdir / "gradcam", gdir / "images", gdir / "preprocess"):
        d.mkdir(parents=True, exist_ok=True)

    # synthetic images ------------------------------------------------------------------
    synth = []
    for i in range(3):
        arr = synth_image(i)
        p = gdir / "images" / f"synth-{i}.png"
        Image.fromarray(arr).save(p, optimize=True)
        with Image.open(p) as im:  # read back from disk, exactly as the Rust test will
            x, box, small = preprocess_pil(im)
        synth.append((rel(p), x, box, small))
    synth_batches = [torch.from_numpy(np.concatenate([s[1] for s in synth]))]
    # more BN-calibration data for random-init models: flips / shifts of the synthetic frames
    aug = [np.concatenate([s[1] for s in synth])]
    aug += [a[:, :, ::-1, :] for a in aug] + [a[:, :, :, ::-1] for a in aug]
    bn_batches = [torch.from_numpy(np.ascontiguousarray(np.concatenate(aug)))]

    # preprocessing goldens ----------------------------------------------------------------
    for i in (0, 2):
        img_rel, x, (cx, cy, cw, ch), small = synth[i]
        dump_json(gdir / "preprocess" / f"synth-{i}.json", {
            "image": img_rel, "crop": {"x": cx, "y": cy, "width": cw, "height": ch},
            "resize": {"width": SIZE, "height": SIZE, "filter": "PIL Image.BILINEAR (antialiased)"},
            "scale": 255.0, "mean": fl(MEAN), "std": fl(STD),
            "resized_rgb_u8": small.ravel().tolist(),
            "input_shape": [1, 3, SIZE, SIZE], "input": fl(x),
            "notes": "crop = centre square of side min(w,h) at floor((w-side)/2), floor((h-side)/2); "
                     "resized_rgb_u8 = PIL crop.resize((64,64), Image.BILINEAR), HWC row-major; "
                     "input = NCHW float32 computed in float32 as ((u8 / 255) - mean) / std.",
        })

    # tiny model ------------------------------------------------------------------------------
    seed_all(SEED)
    net = Net(GapHead())
    train_info = None
    calib = None
    if args.ham10000:
        u8, ys, is_val = load_ham10000(args.ham10000)
        train_info = train(net, u8, ys, is_val, args.epochs)
        print("[train] result", json.dumps(train_info))
        vidx = np.where(is_val)[0]
        pick = np.random.default_rng(SEED + 2).choice(vidx, 64, replace=False)
        calib = normalise_u8_batch(u8[np.sort(pick)])
        del u8
    else:
        calibrate_bn(net, bn_batches)
        rng = np.random.default_rng(SEED + 3)
        base = np.concatenate([s[1] for s in synth])
        calib = np.concatenate([base[i % 3][None] + rng.normal(0, 0.2, (1, 3, SIZE, SIZE))
                                for i in range(64)]).astype(np.float32)
    net.eval()
    f32_path = mdir / "tiny-f32.onnx"
    m32 = export_onnx(net, f32_path)
    ops32 = head_ops(m32)
    print("[tiny-f32] all ops:", [n.op_type for n in m32.graph.node])
    print("[tiny-f32] head ops features->logits:", ops32)
    assert ops32 == ["GlobalAveragePool", "Flatten", "Gemm"], ops32
    prov = {"purpose": "TEST MODEL ONLY -- tiny CNN for dermcam's tests; not a medical device, "
                       "not for diagnosis",
            "generator": "models/test/make_test_model.py (deterministic, seed %d)" % SEED,
            "architecture": "EfficientNet-Lite-like: conv-BN-ReLU6 stem, a depthwise-separable "
                            "block, an MBConv block (expand 3), 1x1 conv-BN-ReLU6 -> features (32x8x8), "
                            "GAP -> Flatten -> Dropout(0.2, removed at export) -> Gemm(32->7)"}
    if train_info:
        prov["training_data"] = ("HAM10000 (Tschandl et al. 2018, doi:10.7910/DVN/DBW86T), "
                                 "lesion-grouped 85/15 split, %d epochs at 64x64" % train_info["epochs"])
        prov["data_license"] = "CC BY-NC-SA 4.0 (weights derived from HAM10000: non-commercial)"
        prov["metrics"] = ("train acc %.3f, train balanced acc %.3f, val acc %.3f, "
                           "val balanced acc %.3f" % (train_info["train_acc"], train_info["train_bal_acc"],
                                                      train_info["val_acc"], train_info["val_bal_acc"]))
    else:
        prov["training_data"] = "none: seeded random init (BN statistics from synthetic images)"
    write_manifest(f32_path, "dermcam-tiny-test-f32", "f32", ops32, prov)
    s32 = ort_session(f32_path)

    # int8 -----------------------------------------------------------------------------------
    int8_path = mdir / "tiny-int8.onnx"
    m8 = quantise(f32_path, int8_path, calib, args.calib)
    ops8 = head_ops(m8)
    print("[tiny-int8] head ops features->logits:", ops8)
    prov8 = dict(prov)
    prov8["quantisation"] = ("onnxruntime %s quantize_static, QDQ, QInt8 activations, per-channel "
                             "QInt8 weights, %s calibration on 64 preprocessed %s images"
                             % (ort.__version__, args.calib,
                                "HAM10000 validation" if train_info else "synthetic"))
    write_manifest(int8_path, "dermcam-tiny-test-int8", "int8", ops8, prov8)
    s8 = ort_session(int8_path)

    # tiny-f32 goldens ---------------------------------------------------------------------------
    print("[golden] tiny-f32")
    model_rel = rel(f32_path)
    ref = []
    for i, (img_rel, x, _, _) in enumerate(synth):
        ref.append(gradcam_case(net, model_rel, s32, img_rel, x, None,
                                gdir / "gradcam" / f"tiny-f32-synth{i}-argmax.json",
                                "tiny-f32, argmax target."))
    # explicitly chosen non-argmax class: mel (4), or bcc (1) if mel is the argmax
    _, lg = ort_run(s32, synth[1][1])
    c = non_argmax_class(lg[0], [4, 1])
    gradcam_case(net, model_rel, s32, synth[1][0], synth[1][1], c,
                 gdir / "gradcam" / f"tiny-f32-synth1-class{c}-{LABELS[c][0]}.json",
                 "tiny-f32, explicitly chosen non-argmax target.")

    # tiny-int8 goldens ------------------------------------------------------------------------
    print("[golden] tiny-int8")
    wd = int8_gemm_weights(m8)
    gemm_f32 = next(numpy_helper.to_array(t) for t in m32.graph.initializer
                    if t.name in [n.input[1] for n in m32.graph.node if n.op_type == "Gemm"])
    print(f"  int8 Gemm weights dequantised vs f32: max |diff| {np.abs(wd - gemm_f32).max():.2e}")
    pears = []
    for i, (img_rel, x, _, _) in enumerate(synth):
        r = ref[i]
        f8, l8 = ort_run(s8, x)
        c8, alpha8 = int8_cam(f8, wd, r["target"])
        up8 = cv2.resize(c8, (SIZE, SIZE))  # same bilinear resize pytorch-grad-cam uses
        pg, pu = pearson(c8, r["grid"]), pearson(up8, r["up"])
        pears.append((pg, pu))
        dump_json(gdir / "gradcam" / f"tiny-int8-synth{i}.json", {
            "model": rel(int8_path), "image": img_rel, "input_shape": [1, 3, SIZE, SIZE],
            # the input tensor is bit-identical to reference_case's `input` (not repeated, to
            # keep the goldens small)
            "input_from": r["file"], "target_class": r["target"], "target_label": LABELS[r["target"]][0],
            "target_is_argmax": bool(r["target"] == int(np.argmax(l8[0]))),
            "logits_onnxruntime": fl(l8[0]), "reference_case": r["file"],
            "alpha_int8": fl(alpha8),
            "cam_grid_int8_python": {"height": int(c8.shape[0]), "width": int(c8.shape[1]),
                                     "values": fl(c8)},
            "pearson_cam_grid_vs_reference": pg, "pearson_cam_upsampled_vs_reference": pu,
            "notes": "int8 CAM computed in Python from onnxruntime's int8 `features` output and "
                     "the dequantised int8 Gemm weights: alpha_k = W[c,k]/(H*W); map = "
                     "max(sum_k alpha_k A_k, 0), x -= min; x /= (1e-7 + max). Compare against "
                     "reference_case's cam_grid / cam_upsampled (Pearson >= 0.98).",
        })
        print(f"  tiny-int8-synth{i}.json: target {r['target']} int8 argmax {int(np.argmax(l8[0]))} "
              f"|logits int8-f32|max {np.abs(l8[0] - ort_run(s32, x)[1][0]).max():.3f} "
              f"Pearson grid {pg:.4f} upsampled {pu:.4f}")
    if min(min(p) for p in pears) < 0.98:
        print("WARNING: int8 Pearson below 0.98", file=sys.stderr)

    # head fixtures -------------------------------------------------------------------------------
    fixtures = [
        ("head-mlp", MlpHead, ["GlobalAveragePool", "Flatten", "Gemm", "Relu", "Gemm"]),
        ("head-matmul-clip", MatMulClipHead, ["ReduceMean", "MatMul", "Add", "Clip", "MatMul", "Add"]),
        ("head-unsupported", MaxHead, ["GlobalMaxPool", "Flatten", "Gemm"]),
    ]
    for k, (name, cls, expect) in enumerate(fixtures):
        print(f"[fixture] {name}")
        seed_all(SEED + 10 + k)
        fnet = Net(cls())
        calibrate_bn(fnet, bn_batches)
        if cls is MatMulClipHead:
            # put a few hidden units in Clip's saturated regions (>6 and <0) for the golden
            # inputs so the fixture exercises both gradient masks
            with torch.no_grad():
                p = fnet.features(synth_batches[0]).mean(dim=(2, 3))
                hmean = (p @ fnet.head.w1).mean(0)
                tgt = torch.tensor([8.0, 9.0, 8.5, 10.0, -2.0, -3.0] + [1.0 + 0.4 * j for j in range(10)])
                fnet.head.b1.copy_(tgt - hmean)
        if cls is MlpHead:
            with torch.no_grad():
                p = fnet.features(synth_batches[0]).mean(dim=(2, 3))
                fnet.head.fc1.bias.sub_((fnet.head.fc1(p)).mean(0))  # centre: ~half the ReLUs off
                fnet.head.fc1.bias.add_(torch.linspace(-0.05, 0.05, 16))
        fnet.eval()
        path = fdir / f"{name}.onnx"
        fm = export_onnx(fnet, path, fix_maxpool=(cls is MaxHead))
        fops = head_ops(fm)
        print(f"  head ops features->logits: {fops}")
        assert fops == expect, (fops, expect)
        write_manifest(path, f"dermcam-fixture-{name}", "f32", fops, {
            "purpose": "TEST FIXTURE ONLY -- random-init weights (seeded), for exact Grad-CAM "
                       "backprop through deeper heads" + (" ; this head must be REFUSED by dermcam"
                                                          if cls is MaxHead else ""),
            "generator": "models/test/make_test_model.py (seed %d)" % (SEED + 10 + k),
            "training_data": "none (BN statistics from synthetic images)",
        })
        sess = ort_session(path)
        _ = ort_run(sess, synth[0][1])
        if cls is MaxHead:
            continue
        with torch.no_grad():
            p = fnet.features(synth_batches[0]).mean(dim=(2, 3))
            if cls is MlpHead:
                hid = fnet.head.fc1(p)
                print(f"  hidden Relu active units per image: {(hid > 0).sum(1).tolist()} / 16")
            else:
                hid = p @ fnet.head.w1 + fnet.head.b1
                print(f"  hidden Clip: >6 {(hid > 6).sum(1).tolist()}, <0 {(hid < 0).sum(1).tolist()}, "
                      f"linear {((hid >= 0) & (hid <= 6)).sum(1).tolist()} / 16 per image")
        mrel = rel(path)
        gradcam_case(fnet, mrel, sess, synth[0][0], synth[0][1], None,
                     gdir / "gradcam" / f"{name}-synth0-argmax.json", f"{name}, argmax target.")
        _, lg = ort_run(sess, synth[1][1])
        c = non_argmax_class(lg[0], [4, 1])
        gradcam_case(fnet, mrel, sess, synth[1][0], synth[1][1], c,
                     gdir / "gradcam" / f"{name}-synth1-class{c}-{LABELS[c][0]}.json",
                     f"{name}, explicitly chosen non-argmax target.")

    # colour maps -------------------------------------------------------------------------------
    jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET)
    jet = jet.reshape(256, 3)[:, ::-1]
    cmap = matplotlib.colormaps["inferno"]
    inf = np.array([cmap(i / 255)[:3] for i in range(256)], np.float64)
    inf_u8 = np.floor(255.0 * inf + 0.5).astype(int)
    assert not np.any(np.isclose((255.0 * inf) % 1.0, 0.5, atol=1e-9))  # no rounding ties
    dump_json(gdir / "colormaps.json", {
        "jet": jet.astype(int).tolist(), "inferno": inf_u8.tolist(),
        "notes": "jet: cv2.applyColorMap(np.arange(256, dtype=uint8), cv2.COLORMAP_JET) (OpenCV "
                 + cv2.__version__ + "), BGR converted to RGB. inferno: matplotlib "
                 + matplotlib.__version__ + " colormaps['inferno'](i/255)[:3] (float64), "
                 "value = floor(255*v + 0.5) (round half up; no exact ties occur, so this equals "
                 "round-half-even too). Row i is the colour for heat value i.",
    })

    print("[sizes]")
    for p in [f32_path, int8_path] + sorted(fdir.glob("*.onnx")):
        print(f"  {rel(p)}: {p.stat().st_size} bytes")
    tot = sum(p.stat().st_size for d in (mdir, fdir, gdir) for p in d.rglob("*") if p.is_file())
    print(f"  total written under models/test, tests/fixtures/models, tests/golden: {tot} bytes")
    ldiffs = [r["logits_diff"] for r in ref]
    print(f"[summary] tiny-f32 logits |torch - onnxruntime| max {max(ldiffs):.2e}; "
          f"int8 Pearson grid min {min(p[0] for p in pears):.4f}, upsampled min "
          f"{min(p[1] for p in pears):.4f}")
    if train_info:
        print("[summary] training", json.dumps(train_info))


if __name__ == "__main__":
    main()
