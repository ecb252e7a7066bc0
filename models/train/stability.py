"""How often does the model's top-1 change when every pixel moves by at most one grey level?

    python stability.py /work/shared/data/ham10000 --model ../efficientnet-lite0-ham10000/model-f32.onnx \
        [--split test] [--levels 1] [--repeats 3]

Takes dermcam's preprocessed uint8 input (common.crop_resize_uint8), adds integer noise drawn
uniformly from {-levels..levels} to each pixel and channel (clipped to 0..255: what two JPEG
decoders that round differently produce), and counts the images whose top-1 class differs from
the clean image's, with onnxruntime. Prints the flip rate per repeat and their mean."""
import argparse
import json

import numpy as np
import onnxruntime as ort

from common import normalise
from train import load_cache


def session(model):
    """An onnxruntime CPU session on 2 threads (the box's cores)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def logits(sess, u8):
    """Logits (N x classes) of uint8 NHWC inputs, one image per run (the model's batch is 1)."""
    return np.concatenate([sess.run(["logits"], {"input": normalise(u8[i:i + 1])})[0] for i in range(len(u8))])


def top1(sess, u8):
    return logits(sess, u8).argmax(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--model", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--levels", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sess = session(args.model)
    x, _ = load_cache(args.data_dir, args.split, args.size)
    clean = top1(sess, x)
    rng = np.random.default_rng(args.seed)
    rates = []
    for r in range(args.repeats):
        noise = rng.integers(-args.levels, args.levels + 1, x.shape)
        noisy = np.clip(x.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        rates.append(float((top1(sess, noisy) != clean).mean()))
        print(f"repeat {r}: {rates[-1]:.4f} of {len(x)} images change top-1", flush=True)
    print(json.dumps({"model": args.model, "split": args.split, "levels": args.levels,
                      "flip_rates": rates, "mean_flip_rate": float(np.mean(rates))}))


if __name__ == "__main__":
    main()
