"""How much does the top class flicker on a hand-held camera, and how much would smoothing help?

    python jitter.py /work/shared/data/ham10000 --model ../efficientnet-lite0-ham10000/model-f32.onnx \
        [--split val] [--frames 16] [--out results/jitter-val.json]

For every image of the split, a short "hand-held" clip of --frames frames is simulated from the
256x192 image: dermcam's centre square drifts horizontally in a random walk (steps of 1.5 px
standard deviation, within +-8 px), each frame gets sensor noise (Gaussian, 2 grey levels) and a
gain in [0.97, 1.03]; then PIL bilinear resize to the model's input, as dermcam does. The model
runs on every frame (onnxruntime). Reported, per policy: the fraction of consecutive frames whose
shown label differs, the fraction of lesions whose label changes at least once in the clip, and
the balanced accuracy over all frames:
  - raw: each frame's own top class (what dermcam shows today);
  - ema a: exponential moving average of the probabilities, p_t = a * frame_t + (1 - a) * p_{t-1}
    (a = 0.3 is a time constant of ~3 frames, ~0.2 s at 15 analyses/s);
  - hysteresis m: the label changes only when the new top class beats the shown one by m.
Uses the validation split by default: this informs a display choice, so it must not look at test."""
import argparse
import json

import numpy as np
from PIL import Image

from common import CLASS_INDEX, CLASSES, image_path, read_split
from stability import logits, session


def simulate(img, frames, size, rng):
    """`frames` jittered uint8 inputs (frames x size x size x 3) from one RGB image."""
    a = np.asarray(img, dtype=np.float32)
    h, w, _ = a.shape
    side = min(w, h)
    x0c, y0c = (w - side) // 2, (h - side) // 2
    dx = 0.0
    out = []
    for _ in range(frames):
        dx = float(np.clip(dx + rng.normal(0, 1.5), -8, 8))
        x0 = max(0, min(w - side, int(round(x0c + dx))))
        f = np.clip(a * rng.uniform(0.97, 1.03) + rng.normal(0, 2.0, a.shape), 0, 255).astype(np.uint8)
        crop = Image.fromarray(f[y0c:y0c + side, x0:x0 + side])
        out.append(np.asarray(crop.resize((size, size), Image.BILINEAR)))
    return np.stack(out)


def summarise(labels, y):
    changes = labels[:, 1:] != labels[:, :-1]
    recall = [float((labels[y == c] == c).mean()) for c in range(len(CLASSES))]
    return {"frame_to_frame_changes": float(changes.mean()),
            "lesions_changing": float(changes.any(1).mean()),
            "balanced_accuracy": float(np.mean(recall))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--model", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args()
    sess = session(args.model)
    size = sess.get_inputs()[0].shape[2]
    rows = read_split(args.split)
    rng = np.random.default_rng(args.seed)
    probs, y = [], []
    for r in rows:
        with Image.open(image_path(args.data_dir, r["image_id"])) as img:
            lg = logits(sess, simulate(img.convert("RGB"), args.frames, size, rng))
        p = np.exp(lg - lg.max(1, keepdims=True))
        probs.append(p / p.sum(1, keepdims=True))
        y.append(CLASS_INDEX[r["dx"]])
    P, y = np.stack(probs), np.array(y)
    n, t, _ = P.shape
    result = {"model": args.model, "split": args.split, "images": n, "frames": t, "policies": {}}
    result["policies"]["raw"] = summarise(P.argmax(2), y)
    for a in (0.5, 0.3, 0.2):
        q = np.empty_like(P)
        q[:, 0] = P[:, 0]
        for i in range(1, t):
            q[:, i] = a * P[:, i] + (1 - a) * q[:, i - 1]
        result["policies"][f"ema {a}"] = summarise(q.argmax(2), y)
    for m in (0.05, 0.1):
        lab = np.zeros((n, t), dtype=np.int64)
        lab[:, 0] = P[:, 0].argmax(1)
        idx = np.arange(n)
        for i in range(1, t):
            top, cur = P[:, i].argmax(1), lab[:, i - 1]
            lab[:, i] = np.where(P[idx, i, top] - P[idx, i, cur] > m, top, cur)
        result["policies"][f"hysteresis {m}"] = summarise(lab, y)
    for k, v in result["policies"].items():
        print(f"{k:>16}: label changes on {v['frame_to_frame_changes']:.3f} of consecutive frames, "
              f"{v['lesions_changing']:.3f} of lesions change at least once, "
              f"balanced accuracy {v['balanced_accuracy']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
