"""Print the learning curves (logs/history-<size>[-RUN].jsonl) as markdown tables, one per run.

    python curves.py [--size 160] [--run "" --run seed2] > results/learning_curves.md"""
import argparse
import json
import os

from common import CLASSES, HERE

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=160)
ap.add_argument("--run", action="append",
                help="run name as given to train.py --run ('' = the first run); default: both runs "
                     "of the committed model")
args = ap.parse_args()
runs = args.run if args.run is not None else ["", "seed2"]
print(f"# Learning curves ({args.size}x{args.size}; 100 steps x 32 images per epoch; validation split)")
for run in runs:
    name = f"history-{args.size}" + (f"-{run}" if run else "") + ".jsonl"
    rows = [json.loads(l) for l in open(os.path.join(HERE, "logs", name))]
    print(f"\n## {run or 'first run'} (logs/{name})\n")
    print("| epoch | lr (backbone) | train loss | val loss | val bal. acc | val acc | "
          + " | ".join(f"{c} rec" for c in CLASSES) + " | train s | val s |")
    print("|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CLASSES) + "---:|---:|")
    for r in rows:
        print(f"| {r['epoch']} | {r['lr']:.2e} | {r['train_loss']:.3f} | {r['val_loss']:.3f} | "
              f"{r['val_balanced_accuracy']:.3f} | {r['val_accuracy']:.3f} | "
              + " | ".join(f"{r['val_recall'][c]:.2f}" for c in CLASSES)
              + f" | {r['train_seconds']:.0f} | {r['val_seconds']:.0f} |")
