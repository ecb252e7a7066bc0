"""Regenerates the JPEG decoder goldens: small JPEGs (three chroma subsamplings, odd sizes so
the edge MCUs and the upsampler's borders are exercised) cut from a synthetic test image, and
each one decoded by Pillow (libjpeg-turbo, the decoder the default model was trained with) to a
PNG. tests/kernels.rs checks that dermcam's libjpeg-turbo path gives exactly these pixels.

    python tests/golden/jpeg/make.py        # Pillow >= 10
"""
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
src = Image.open(os.path.join(HERE, "..", "images", "synth-0.png")).convert("RGB")
for name, (w, h), sub, q in [("s420", (101, 75), 2, 90), ("s422", (64, 47), 1, 85), ("s444", (33, 17), 0, 95)]:
    crop = src.crop((237, 181, 237 + w, 181 + h))  # over the lesion border: colour edges
    jpg = os.path.join(HERE, f"{name}.jpg")
    crop.save(jpg, quality=q, subsampling=sub)
    decoded = np.asarray(Image.open(jpg).convert("RGB"))
    Image.fromarray(decoded).save(os.path.join(HERE, f"{name}-pil.png"))
    print(name, decoded.shape, os.path.getsize(jpg))
