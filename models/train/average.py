"""Average the weights of several epoch checkpoints (stochastic weight averaging over the
low-learning-rate end of the cosine schedule), re-estimate the BatchNorm statistics on the
training images (dermcam preprocessing, no augmentation), and score it on the validation split.

    python average.py /work/shared/data/ham10000 --epochs 22-27 [--out checkpoints/swa.pt]
    python average.py /work/shared/data/ham10000 --epochs 20-29 \
        --ckpt-dir checkpoints --ckpt-dir checkpoints/seed2 --out checkpoints/soup.pt

With several --ckpt-dir (runs of train.py with other --seed and --run), the same epochs of every
run are averaged together (a uniform "model soup": the runs start from the same ImageNet
weights, so their weights can be averaged; whether that helps is read off validation).

Whether the average or the single best epoch is exported is decided on validation balanced
accuracy only (never on the test split)."""
import argparse
import os

import numpy as np
import torch

from common import CLASSES
from train import CKPT_DIR, build_model, load_cache, metrics, predict, to_input


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--epochs", required=True, help="inclusive range a-b or comma list")
    ap.add_argument("--ckpt-dir", action="append",
                    help="checkpoint folder of a run (repeat to average several runs); default checkpoints/")
    ap.add_argument("--out", default=os.path.join(CKPT_DIR, "swa.pt"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if "-" in args.epochs:
        a, b = map(int, args.epochs.split("-"))
        eps = list(range(a, b + 1))
    else:
        eps = [int(e) for e in args.epochs.split(",")]
    dirs = args.ckpt_dir or [CKPT_DIR]
    cks = [torch.load(os.path.join(d, f"epoch-{e:02d}.pt"), weights_only=False, map_location="cpu")
           for d in dirs for e in eps]
    size = cks[0].get("size", cks[0]["args"]["size"])
    avg = {}
    for k, v in cks[0]["model"].items():
        if v.is_floating_point():
            avg[k] = sum(c["model"][k] for c in cks) / len(cks)
        else:
            avg[k] = v
    net = build_model(size, pretrained=False)
    net.load_state_dict(avg)
    net = net.to(memory_format=torch.channels_last)

    xtr, _ = load_cache(args.data_dir, "train", size)
    xva, yva = load_cache(args.data_dir, "val", size)
    # BN re-estimation: cumulative average over one pass of the training images
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    trainable_bn = []
    frozen_blocks = cks[0]["args"].get("freeze_blocks", 0)
    frozen = {id(m) for mod in [net._bn0] + list(net._blocks[:frozen_blocks]) for m in mod.modules()}
    for m in bns:
        if id(m) not in frozen:  # frozen layers kept their ImageNet statistics during training
            m.reset_running_stats()
            m.momentum = None
            trainable_bn.append(m)
    net.eval()
    for m in trainable_bn:
        m.train()
    with torch.no_grad():
        for i in range(0, len(xtr), 64):
            net(to_input(xtr[i:i + 64]))
    net.eval()
    met = metrics(yva, predict(net, xva).argmax(1).numpy())
    seeds = sorted({c["args"].get("seed", 1) for c in cks})
    what = f"{eps}" + (f" of {len(dirs)} runs, seeds {seeds}" if len(dirs) > 1 else "")
    print(f"average of {what}: val balanced accuracy {met['balanced_accuracy']:.4f}, "
          f"mel recall {met['mel_recall']:.4f}", {k: round(v, 3) for k, v in met["recall"].items()})
    torch.save({"model": net.state_dict(), "epoch": f"average of {what}", "size": size,
                "classes": CLASSES, "val": met, "args": cks[0]["args"]}, args.out)


if __name__ == "__main__":
    main()
