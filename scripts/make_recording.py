#!/usr/bin/env python3
"""Synthesise the bundled dermatoscope recordings and stills for dermcam.

Everything written by this script is SYNTHETIC: procedurally generated skin, lesion and hairs.
No patient data and no HAM10000 (or any other dataset) image is used.

Usage (from the repository root):

    nice -n 5 /opt/dermcam-py/bin/python scripts/make_recording.py [--out recordings] [--seed 20261204]

Dependencies: numpy and pillow only. The output is deterministic for a given seed (and a given
numpy / pillow / libjpeg build: JPEG bytes may differ across libjpeg versions). Runtime: a few
seconds.

Outputs (format: docs/formats.md, `.dcrec` version 1, little-endian):

  lesion-mjpeg.dcrec  MJPG 640x480, stride 0, 90 frames at 15/1 fps, sequence 0..89,
                      timestamps floor(i * 1e6 / 15) us (0, 66666, 133333, ...). Each payload is a
                      baseline (non-progressive) JPEG from PIL, quality 85, 4:2:0 chroma subsampling.
  lesion-yuyv.dcrec   YUYV 320x240, PADDED stride 704 bytes per line (640 bytes of pixels + 64
                      padding bytes, all 0xAA so a reader that ignores the stride shows stripes),
                      30 frames at 15/1 fps.
  lesion-rgb24.dcrec  RGB3 160x120, stride 480 (packed, no padding), 10 frames at 15/1 fps.
  stills/lesion-{a,b,c}.jpg
                      640x480 JPEG stills, quality 90, 4:2:0, three different lesion shapes, sharp,
                      for `dermcam infer` demos.

YUYV encoding (BT.601, limited / "studio swing" range, the usual camera convention), with R, G, B
in 0..255:

    Y  =  16 + ( 65.481 R + 128.553 G +  24.966 B) / 255
    Cb = 128 + (-37.797 R -  74.203 G + 112.000 B) / 255
    Cr = 128 + (112.000 R -  93.786 G -  18.214 B) / 255

Y is computed per pixel; Cb and Cr of each horizontal pixel pair are the average of the two
pixels' (unrounded) Cb / Cr. Values are rounded half up (floor(x + 0.5)) and clamped to the
legal range (Y 16..235, Cb/Cr 16..240). Bytes per pair: Y0 Cb(U) Y1 Cr(V).

The scene (all frames are rendered at 640x480 and box-downscaled for the smaller files):
  * skin: beige/pink base, low-frequency colour variation (redness, melanin) from multi-octave
    value noise, faint skin furrows, pores and fine noise;
  * lesion: brown to dark brown, irregular border r(theta) = R0 * (1 + sum_k a_k cos(k theta + p_k))
    for k = 2..6 plus a little noise, darker core, warped reticular pigment network, dark
    dots/globules, and a lighter halo just outside the border;
  * 3-5 thin dark curved hairs (cubic Bezier curves) crossing the field;
  * hand-held motion: the scene drifts slowly (about 4 px/s plus a small wobble) under the lens;
  * focus: Gaussian blur (PIL ImageFilter.GaussianBlur) with sigma = 3 * sin(pi * i / (N - 1)),
    i.e. sharp -> soft -> sharp over each clip (sigma in 640x480 pixels);
  * per-frame sensor noise;
  * the dermatoscope lens vignette: black outside a circle of radius 0.48 * height centred in the
    frame, with a soft edge and slight light fall-off towards it (fixed, does not drift).
"""

import argparse
import io
import math
import os
import struct

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 640, 480          # render resolution
MARGIN = 48              # scene canvas margin for drift
CW, CH = W + 2 * MARGIN, H + 2 * MARGIN
FPS = 15

# ---------------------------------------------------------------------------------------------
# .dcrec writer
# ---------------------------------------------------------------------------------------------


def dcrec_header(fourcc, width, height, stride, frame_count, fps_num, fps_den):
    hdr = struct.pack("<8sHH4sIIIIII24s", b"DCAMREC\0", 1, 64, fourcc, width, height, stride,
                      frame_count, fps_num, fps_den, b"\0" * 24)
    assert len(hdr) == 64
    return hdr


def frame_record(sequence, timestamp_us, payload, flags=0):
    return struct.pack("<4sIQII", b"FRAM", sequence, timestamp_us, len(payload), flags) + payload


def write_dcrec(path, fourcc, width, height, stride, payloads, fps_num=FPS, fps_den=1):
    with open(path, "wb") as f:
        f.write(dcrec_header(fourcc, width, height, stride, len(payloads), fps_num, fps_den))
        for i, p in enumerate(payloads):
            ts = i * 1_000_000 * fps_den // fps_num   # floor(i * 1e6 / fps): 0, 66666, 133333
            f.write(frame_record(i, ts, p))


# ---------------------------------------------------------------------------------------------
# Pixel format encoders
# ---------------------------------------------------------------------------------------------


def _round_clamp(x, lo, hi):
    return np.clip(np.floor(x + 0.5), lo, hi).astype(np.uint8)


def rgb_to_yuyv(rgb, stride, pad_byte=0xAA):
    """RGB uint8 (h, w, 3), w even -> YUYV bytes with `stride` bytes per line."""
    h, w, _ = rgb.shape
    assert w % 2 == 0 and stride >= 2 * w
    f = rgb.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    cb2 = 0.5 * (cb[:, 0::2] + cb[:, 1::2])
    cr2 = 0.5 * (cr[:, 0::2] + cr[:, 1::2])
    out = np.full((h, stride), pad_byte, dtype=np.uint8)
    px = out[:, : 2 * w].reshape(h, w // 2, 4)
    px[..., 0] = _round_clamp(y[:, 0::2], 16, 235)
    px[..., 1] = _round_clamp(cb2, 16, 240)
    px[..., 2] = _round_clamp(y[:, 1::2], 16, 235)
    px[..., 3] = _round_clamp(cr2, 16, 240)
    return out.tobytes()


def rgb_to_jpeg(rgb, quality):
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality, subsampling=2,
                                     progressive=False, optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Scene synthesis
# ---------------------------------------------------------------------------------------------


def value_noise(rng, w, h, cells, octaves=4, persistence=0.5):
    """Multi-octave value noise in roughly [-1, 1], shape (h, w), smooth (bicubic upsampling)."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = cells * (2 ** o)
        gh = max(2, int(round(c * h / w)) + 1)
        grid = rng.uniform(-1.0, 1.0, (gh, c + 1)).astype(np.float32)
        img = Image.fromarray(grid, "F").resize((w, h), Image.BICUBIC)
        acc += amp * np.asarray(img, np.float32)
        total += amp
        amp *= persistence
    return acc / total


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def lerp(a, b, t):
    return a + (b - a) * t[..., None]


def supersampled_mask(w, h, draw_fn, ss=3):
    """Draw with `draw_fn(ImageDraw, scale)` on an `ss`x canvas, return antialiased float mask."""
    big = Image.new("L", (w * ss, h * ss), 0)
    draw_fn(ImageDraw.Draw(big), ss)
    return np.asarray(big.resize((w, h), Image.BOX), np.float32) / 255.0


def bezier(p0, p1, p2, p3, n=64):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3


def cell_edges(rng, x, y, spacing, jitter=0.9):
    """Distance-to-cell-border field (F2 - F1, in pixels) of a jittered-grid Voronoi diagram.

    Small values lie on the cell walls: a honeycomb-like mesh (pigment network, skin furrows).
    """
    gx, gy = x / spacing, y / spacing
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    nx, ny = int(ix.max()) + 3, int(iy.max()) + 3
    off = rng.uniform(0.5 - jitter / 2, 0.5 + jitter / 2, (ny + 2, nx + 2, 2)).astype(np.float32)
    f1 = np.full(x.shape, np.inf, np.float32)
    f2 = np.full(x.shape, np.inf, np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cx, cy = ix + dx, iy + dy
            o = off[np.clip(cy + 1, 0, ny + 1), np.clip(cx + 1, 0, nx + 1)]
            dd = np.hypot(cx + o[..., 0] - gx, cy + o[..., 1] - gy)
            f2 = np.where(dd < f1, f1, np.minimum(f2, dd))
            f1 = np.minimum(f1, dd)
    return (f2 - f1) * spacing


def make_scene(seed):
    """Static scene (skin + lesion + hairs) on a CW x CH canvas, float32 RGB in 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:CH, 0:CW].astype(np.float32)

    # --- skin -----------------------------------------------------------------------------
    skin_base = np.array([212, 158, 138], np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
    redness = value_noise(rng, CW, CH, 3, octaves=3)          # haemoglobin blotches
    melanin = value_noise(rng, CW, CH, 4, octaves=3)          # tan variation
    bright = value_noise(rng, CW, CH, 2, octaves=2)           # illumination / thickness
    skin = np.broadcast_to(skin_base, (CH, CW, 3)).copy()
    skin += redness[..., None] * np.array([10, -10, -6], np.float32)
    skin += melanin[..., None] * np.array([-10, -12, -12], np.float32)
    skin *= (1.0 + 0.06 * bright)[..., None]

    # faint skin furrows: walls of a large, irregular, slightly stretched Voronoi mesh
    wx = value_noise(rng, CW, CH, 5, octaves=2) * 14.0
    wy = value_noise(rng, CW, CH, 5, octaves=2) * 14.0
    fa = rng.uniform(0, math.pi)
    fu = (xx * math.cos(fa) + yy * math.sin(fa)) * 0.75 + wx
    fv = (-xx * math.sin(fa) + yy * math.cos(fa)) + wy
    furrow = np.exp(-(cell_edges(rng, fu, fv, rng.uniform(38, 50)) / 2.4) ** 2)
    furrow *= np.clip(0.45 + 0.7 * value_noise(rng, CW, CH, 4, octaves=2), 0, 1)
    skin -= (furrow * 5.0)[..., None] * np.array([1.0, 1.15, 1.05], np.float32)

    # pores: sparse, small, soft darker spots; plus fine static texture
    pores = ((rng.random((CH, CW)) < 0.0012) * 255).astype(np.uint8)
    pores = np.asarray(Image.fromarray(pores, "L").filter(ImageFilter.GaussianBlur(1.3)), np.float32)
    pores = np.clip(pores / 30.0, 0.0, 1.0)
    skin -= (pores * 9.0)[..., None] * np.array([1.0, 1.2, 1.1], np.float32)
    skin += rng.normal(0.0, 1.8, (CH, CW, 1)).astype(np.float32)

    # --- lesion ---------------------------------------------------------------------------
    cx = CW / 2 + rng.uniform(-40, 40)
    cy = CH / 2 + rng.uniform(-30, 30)
    r0 = rng.uniform(95, 130)
    elong = rng.uniform(0.8, 1.0)                  # slight ellipticity
    rot = rng.uniform(0, 2 * math.pi)
    dx, dy = xx - cx, yy - cy
    xr = (dx * math.cos(rot) + dy * math.sin(rot))
    yr = (-dx * math.sin(rot) + dy * math.cos(rot)) / elong
    theta = np.arctan2(yr, xr)
    dist = np.hypot(xr, yr)
    radius = np.ones_like(theta)
    for k in range(2, 7):
        a = rng.uniform(0.03, 0.12) / (k - 1) ** 0.6
        radius += a * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    edge_noise = value_noise(rng, CW, CH, 14, octaves=2)
    d = dist / (r0 * radius) + 0.05 * edge_noise          # normalised radius, 1 at the border

    inside = 1.0 - smoothstep(0.93, 1.04, d)             # lesion mask, soft but defined edge
    ccx, ccy = cx + rng.uniform(-0.3, 0.3) * r0, cy + rng.uniform(-0.3, 0.3) * r0   # off-centre
    dc = np.hypot(xx - ccx, yy - ccy) / r0
    core = 1.0 - smoothstep(0.0, 0.8, dc + 0.15 * value_noise(rng, CW, CH, 5, octaves=2))
    halo = smoothstep(0.95, 1.05, d) * (1.0 - smoothstep(1.05, 1.45, d))

    light_brown = np.array([168, 112, 84], np.float32)
    mid_brown = np.array([128, 80, 56], np.float32)
    dark_brown = np.array([78, 48, 36], np.float32)
    blotch = value_noise(rng, CW, CH, 7, octaves=3)
    pig = np.clip(0.35 + 0.55 * core + 0.25 * blotch, 0.0, 1.0)
    lesion = lerp(lerp(light_brown, mid_brown, np.clip(pig * 2, 0, 1)), dark_brown,
                  np.clip(pig * 2 - 1, 0, 1))

    # reticular pigment network: walls of a warped Voronoi mesh (light holes, dark lines)
    wx = value_noise(rng, CW, CH, 9, octaves=2) * 5.0
    wy = value_noise(rng, CW, CH, 9, octaves=2) * 5.0
    spacing = rng.uniform(12, 15)
    walls = cell_edges(rng, xx + wx, yy + wy, spacing)
    width = 2.6 + 1.0 * value_noise(rng, CW, CH, 8, octaves=2)     # line thickness varies
    net = (np.exp(-(walls / width) ** 2) * 255).astype(np.uint8)
    net = np.asarray(Image.fromarray(net, "L").filter(ImageFilter.GaussianBlur(0.9)), np.float32) / 255
    net_vis = np.clip(0.5 + 0.8 * value_noise(rng, CW, CH, 5, octaves=2), 0, 1)
    net_vis *= 1.0 - 0.75 * smoothstep(0.7, 1.0, d)          # network fades at the periphery
    net_vis *= 1.0 - 0.5 * core ** 2                          # and in the structureless centre
    lesion = lerp(lesion, lesion * np.array([0.62, 0.58, 0.6], np.float32), net * net_vis)

    # dots and globules, clustered in part of the lesion
    dots = []
    gcx = rng.uniform(-0.4, 0.4) * r0
    gcy = rng.uniform(-0.4, 0.4) * r0
    for _ in range(int(rng.integers(12, 26))):
        px = cx + gcx + rng.normal(0, 0.35 * r0)
        py = cy + gcy + rng.normal(0, 0.35 * r0)
        dots.append((px, py, rng.uniform(1.0, 3.2), rng.uniform(0.5, 0.95)))

    def draw_dots(dr, s, dots=dots, lo=0.0):
        for px, py, pr, op in dots:
            dr.ellipse([(px - pr) * s, (py - pr) * s, (px + pr) * s, (py + pr) * s],
                       fill=int(255 * op))

    dotm = supersampled_mask(CW, CH, draw_dots) * (1.0 - smoothstep(0.85, 1.0, d))
    lesion = lerp(lesion, np.array([58, 36, 30], np.float32), dotm)

    # a faint blue-grey veil in part of the core
    veil = np.clip(value_noise(rng, CW, CH, 3, octaves=2) * 1.5, 0, 1) * core * 0.35
    lesion = lerp(lesion, np.array([96, 92, 104], np.float32), veil)

    # halo: lighter, slightly pinker skin just outside the border
    skin = lerp(skin, np.minimum(skin * 1.12 + np.array([6, 4, 4], np.float32), 250.0), halo * 0.8)
    img = lerp(skin, lesion, inside)

    # --- hairs ----------------------------------------------------------------------------
    hairs = []
    for _ in range(int(rng.integers(3, 6))):
        # a gently curved stroke through a point inside the lens field, ends outside it
        q = np.array([CW / 2, CH / 2]) + rng.uniform(-0.3, 0.3, 2) * H
        phi = rng.uniform(0, math.pi)
        u = np.array([math.cos(phi), math.sin(phi)])
        nrm = np.array([-u[1], u[0]])
        p0, p3 = q - 420 * u, q + 420 * u
        bend = rng.uniform(50, 140) * rng.choice([-1.0, 1.0])
        p1 = p0 + (p3 - p0) / 3 + nrm * bend + rng.uniform(-30, 30, 2)
        p2 = p0 + 2 * (p3 - p0) / 3 + nrm * bend * rng.uniform(-0.8, 1.3) + rng.uniform(-30, 30, 2)
        hairs.append((bezier(p0, p1, p2, p3, 128), rng.uniform(1.8, 3.0), rng.uniform(0.8, 0.95)))

    hair_col = np.array([34, 24, 20], np.float32)
    for pts, width, opacity in hairs:
        def draw_hair(dr, s, pts=pts, width=width):
            dr.line([(float(x) * s, float(y) * s) for x, y in pts], fill=255,
                    width=max(1, int(round(width * s))), joint="curve")
        m = supersampled_mask(CW, CH, draw_hair, ss=4)
        img = lerp(img, hair_col, m * opacity)

    return np.clip(img, 0, 255).astype(np.float32)


def vignette_mask():
    """Dermatoscope lens: 1 inside a circle of radius 0.48*H, soft edge, light fall-off."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r = np.hypot(xx - (W - 1) / 2.0, yy - (H - 1) / 2.0) / (0.48 * H)
    edge = 1.0 - smoothstep(0.96, 1.03, r)
    falloff = 1.0 - 0.22 * np.clip(r, 0, 1) ** 3
    return (edge * falloff).astype(np.float32)


def drift(t):
    """Scene offset in 640x480 pixels at time t seconds (hand-held drift, ~4 px/s + wobble)."""
    x = 4.0 * t - 12.0 + 2.5 * math.sin(2 * math.pi * t / 2.3) + 1.0 * math.sin(2 * math.pi * t / 0.9)
    y = -2.5 * t + 7.0 + 2.0 * math.sin(2 * math.pi * t / 3.1 + 1.0) + 0.8 * math.sin(2 * math.pi * t / 1.3)
    return x, y


def render_frames(scene, n, seed, vig, moving=True, focus=True):
    """Yield n RGB uint8 frames (H, W, 3) of the scene as seen through the dermatoscope."""
    rng = np.random.default_rng(seed)
    scene_img = Image.fromarray(np.clip(scene + 0.5, 0, 255).astype(np.uint8), "RGB")
    for i in range(n):
        t = i / FPS
        ox, oy = drift(t) if moving else (0.0, 0.0)
        # output pixel (x, y) samples scene (x + MARGIN - ox, y + MARGIN - oy): scene moves by +o
        fr = scene_img.transform((W, H), Image.AFFINE, (1, 0, MARGIN - ox, 0, 1, MARGIN - oy),
                                 resample=Image.BICUBIC)
        sigma = 3.0 * math.sin(math.pi * i / (n - 1)) if (focus and n > 1) else 0.0
        if sigma > 0.05:
            fr = fr.filter(ImageFilter.GaussianBlur(sigma))
        a = np.asarray(fr, np.float32)
        a = a + rng.normal(0.0, 1.6, a.shape).astype(np.float32)       # sensor noise
        a = a * vig[..., None] + 1.5                                     # black level
        yield np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8), sigma


def downscale(rgb, w, h):
    return np.asarray(Image.fromarray(rgb, "RGB").resize((w, h), Image.BOX), np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "recordings"))
    ap.add_argument("--seed", type=int, default=20261204)
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(os.path.join(out, "stills"), exist_ok=True)
    vig = vignette_mask()

    scene = make_scene(args.seed)

    # MJPEG 640x480, 90 frames
    payloads = [rgb_to_jpeg(f, 85) for f, _ in render_frames(scene, 90, args.seed + 1, vig)]
    write_dcrec(os.path.join(out, "lesion-mjpeg.dcrec"), b"MJPG", W, H, 0, payloads)

    # YUYV 320x240, stride 704, 30 frames
    payloads = [rgb_to_yuyv(downscale(f, 320, 240), 704)
                for f, _ in render_frames(scene, 30, args.seed + 2, vig)]
    write_dcrec(os.path.join(out, "lesion-yuyv.dcrec"), b"YUYV", 320, 240, 704, payloads)

    # RGB24 160x120, stride 480, 10 frames
    payloads = [downscale(f, 160, 120).tobytes()
                for f, _ in render_frames(scene, 10, args.seed + 3, vig)]
    write_dcrec(os.path.join(out, "lesion-rgb24.dcrec"), b"RGB3", 160, 120, 480, payloads)

    # stills: three other lesion shapes, sharp, no drift
    for k, name in enumerate("abc"):
        s = make_scene(args.seed + 100 + k)
        f, _ = next(render_frames(s, 1, args.seed + 200 + k, vig, moving=False, focus=False))
        with open(os.path.join(out, "stills", "lesion-%s.jpg" % name), "wb") as fh:
            fh.write(rgb_to_jpeg(f, 90))

    for root, _, files in os.walk(out):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print("%-40s %10d bytes" % (os.path.relpath(p, out), os.path.getsize(p)))


if __name__ == "__main__":
    main()
