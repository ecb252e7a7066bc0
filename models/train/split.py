"""Split HAM10000 into train/val/test, grouped by lesion_id (all images of a lesion
land in the same split), stratified by class at the lesion level, fixed seed.

    python split.py /work/shared/data/ham10000 [--seed 20261204] [--val 0.15 --test 0.15]

Writes splits/{train,val,test}.csv with image_id,dx,lesion_id (ids only, no images)."""
import argparse
import collections
import csv
import os
import random

from common import CLASSES, SPLIT_DIR


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--test", type=float, default=0.15)
    args = ap.parse_args()

    with open(os.path.join(args.data_dir, "labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    lesions = collections.defaultdict(list)
    for r in rows:
        lesions[r["lesion_id"]].append(r)
    for lid, rs in lesions.items():
        assert len({r["dx"] for r in rs}) == 1, f"lesion {lid} has several dx"

    rng = random.Random(args.seed)
    assign = {}
    for dx in CLASSES:
        ids = sorted(l for l, rs in lesions.items() if rs[0]["dx"] == dx)
        rng.shuffle(ids)
        n = len(ids)
        n_test = round(n * args.test)
        n_val = round(n * args.val)
        for i, lid in enumerate(ids):
            assign[lid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"

    os.makedirs(SPLIT_DIR, exist_ok=True)
    counts = collections.Counter()
    for split in ("train", "val", "test"):
        out = sorted((r for r in rows if assign[r["lesion_id"]] == split), key=lambda r: r["image_id"])
        with open(os.path.join(SPLIT_DIR, f"{split}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "dx", "lesion_id"])
            for r in out:
                w.writerow([r["image_id"], r["dx"], r["lesion_id"]])
                counts[(split, r["dx"])] += 1
        print(split, len(out), {dx: counts[(split, dx)] for dx in CLASSES})


if __name__ == "__main__":
    main()
