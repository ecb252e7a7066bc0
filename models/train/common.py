"""Shared pieces of the dermcam HAM10000 pipeline: labels, split I/O, and the
preprocessing dermcam implements (docs/formats.md), reproduced exactly."""
import csv
import os

import numpy as np
from PIL import Image

# Logit order. Alphabetical, as in HAM10000's dx column.
LABELS = [
    ("akiec", "Actinic keratosis / intraepithelial carcinoma"),
    ("bcc", "Basal cell carcinoma"),
    ("bkl", "Benign keratosis-like lesion"),
    ("df", "Dermatofibroma"),
    ("mel", "Melanoma"),
    ("nv", "Melanocytic nevus"),
    ("vasc", "Vascular lesion"),
]
CLASSES = [c for c, _ in LABELS]
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
MEL = CLASS_INDEX["mel"]

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT_DIR = os.path.join(HERE, "splits")


def read_split(name_or_path):
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(SPLIT_DIR, f"{name_or_path}.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def crop_resize_uint8(img, size):
    """dermcam's preprocessing up to the normalisation: centre square crop of side
    min(w, h) at offset (floor((w-side)/2), floor((h-side)/2)), then PIL
    resize((size, size), BILINEAR) on the uint8 crop. Returns HxWx3 uint8."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    x0 = (w - side) // 2
    y0 = (h - side) // 2
    crop = img.crop((x0, y0, x0 + side, y0 + side))
    if side != size:
        crop = crop.resize((size, size), Image.BILINEAR)
    return np.asarray(crop, dtype=np.uint8)


def load_image_uint8(path, size):
    with Image.open(path) as img:
        return crop_resize_uint8(img, size)


def normalise(u8):
    """uint8 NHWC or HWC -> float32 NCHW / CHW, (x/255 - mean)/std."""
    x = u8.astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def image_path(data_dir, image_id):
    return os.path.join(data_dir, f"{image_id}.jpg")
