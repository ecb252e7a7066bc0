"""Print the learning curves (logs/history-<size>.jsonl) as a markdown table.

    python curves.py [--size 160] > results/learning_curves.md"""
import argparse
import json
import os

from common import CLASSES, HERE

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=160)
args = ap.parse_args()
rows = [json.loads(l) for l in open(os.path.join(HERE, "logs", f"history-{args.size}.jsonl"))]
print(f"# Learning curves ({args.size}x{args.size}; 100 steps x 32 images per epoch; validation split)\n")
print("| epoch | lr (backbone) | train loss | val loss | val bal. acc | val acc | "
      + " | ".join(f"{c} rec" for c in CLASSES) + " | train s | val s |")
print("|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CLASSES) + "---:|---:|")
for r in rows:
    print(f"| {r['epoch']} | {r['lr']:.2e} | {r['train_loss']:.3f} | {r['val_loss']:.3f} | "
          f"{r['val_balanced_accuracy']:.3f} | {r['val_accuracy']:.3f} | "
          + " | ".join(f"{r['val_recall'][c]:.2f}" for c in CLASSES)
          + f" | {r['train_seconds']:.0f} | {r['val_seconds']:.0f} |")
