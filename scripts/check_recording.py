#!/usr/bin/env python3
"""Validate a dermcam `.dcrec` recording (docs/formats.md) and print a summary.

Usage:
    /opt/dermcam-py/bin/python scripts/check_recording.py FILE.dcrec [FILE.dcrec ...]
        [--dump N OUT.png]      also decode frame N to an RGB PNG (YUYV: BT.601 limited range)

Checks: header magic / version / header_len / fourcc / sizes / stride (0 for MJPEG, at least
width * bytes-per-pixel for packed formats) / zero reserved bytes; every frame record's magic,
that it does not run past the end of the file, payload length == stride * height for packed
formats, SOI (FF D8) .. EOI (FF D9) for MJPEG (and, with pillow, that the JPEG decodes to
width x height and is baseline); sequence numbers increasing, timestamps non-decreasing,
frame_count matching the records, no trailing bytes. Exit status 1 if any file has errors.
Dependencies: the standard library; numpy + pillow for JPEG decoding and --dump.
"""

import argparse
import io
import struct
import sys

HDR = struct.Struct("<8sHH4sIIIIII24s")
REC = struct.Struct("<4sIQII")
BPP = {b"YUYV": 2, b"RGB3": 3}

try:
    import numpy as np
    from PIL import Image
except ImportError:  # pragma: no cover
    np = Image = None


def yuyv_to_rgb(payload, w, h, stride):
    a = np.frombuffer(payload, np.uint8).reshape(h, stride)[:, : 2 * w].reshape(h, w // 2, 4)
    a = a.astype(np.float64)
    y = np.empty((h, w))
    y[:, 0::2], y[:, 1::2] = a[..., 0], a[..., 2]
    cb = np.repeat(a[..., 1], 2, axis=1) - 128.0
    cr = np.repeat(a[..., 3], 2, axis=1) - 128.0
    yl = (y - 16.0) * 255.0 / 219.0
    k = 255.0 / 224.0
    r = yl + 1.402 * k * cr
    g = yl - 0.344136 * k * cb - 0.714136 * k * cr
    b = yl + 1.772 * k * cb
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)


def decode(fourcc, payload, w, h, stride):
    if fourcc == b"MJPG":
        return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
    if fourcc == b"YUYV":
        return yuyv_to_rgb(payload, w, h, stride)
    return np.frombuffer(payload, np.uint8).reshape(h, stride)[:, : 3 * w].reshape(h, w, 3)


def check(path, dump=None):
    errors = []
    data = open(path, "rb").read()
    print("== %s (%d bytes)" % (path, len(data)))
    if len(data) < HDR.size:
        print("  ERROR: shorter than the 64-byte header")
        return False
    magic, ver, hlen, fourcc, w, h, stride, count, fnum, fden, reserved = HDR.unpack_from(data)
    if magic != b"DCAMREC\0":
        errors.append("bad magic %r" % magic)
    if ver != 1:
        errors.append("version %d != 1" % ver)
    if hlen < 64:
        errors.append("header_len %d < 64" % hlen)
    if fourcc not in (b"YUYV", b"MJPG", b"RGB3"):
        errors.append("unknown fourcc %r" % fourcc)
    if w == 0 or h == 0:
        errors.append("zero size %dx%d" % (w, h))
    if fourcc == b"MJPG" and stride != 0:
        errors.append("MJPG stride %d != 0" % stride)
    if fourcc in BPP and stride < w * BPP[fourcc]:
        errors.append("stride %d < width*bpp %d" % (stride, w * BPP[fourcc]))
    if fourcc == b"YUYV" and w % 2:
        errors.append("YUYV width %d is odd" % w)
    if fnum == 0 or fden == 0:
        errors.append("fps %d/%d has a zero" % (fnum, fden))
    if reserved != b"\0" * 24:
        errors.append("reserved bytes not zero")

    off = hlen
    n = 0
    sizes, seqs, stamps, flagged = [], [], [], 0
    modes = set()
    while off < len(data) and (count == 0 or n < count):
        if off + REC.size > len(data):
            errors.append("frame %d: record header truncated at offset %d" % (n, off))
            break
        rmagic, seq, ts, length, flags = REC.unpack_from(data, off)
        if rmagic != b"FRAM":
            errors.append("frame %d: bad record magic %r at offset %d" % (n, rmagic, off))
            break
        start = off + REC.size
        if start + length > len(data):
            errors.append("frame %d: payload runs past end of file (truncated)" % n)
            break
        payload = data[start:start + length]
        if fourcc in BPP and length != stride * h:
            errors.append("frame %d: length %d != stride*height %d" % (n, length, stride * h))
        if fourcc == b"MJPG":
            if payload[:2] != b"\xff\xd8" or payload[-2:] != b"\xff\xd9":
                errors.append("frame %d: missing JPEG SOI/EOI" % n)
            elif Image is not None:
                try:
                    im = Image.open(io.BytesIO(payload))
                    im.load()
                    if im.size != (w, h):
                        errors.append("frame %d: JPEG is %dx%d" % (n, im.size[0], im.size[1]))
                    if im.info.get("progressive") or im.info.get("progression"):
                        errors.append("frame %d: progressive JPEG" % n)
                    modes.add(im.mode)
                except Exception as e:  # noqa: BLE001
                    errors.append("frame %d: JPEG does not decode: %s" % (n, e))
        if flags & ~1:
            errors.append("frame %d: unknown flag bits 0x%x" % (n, flags))
        flagged += flags & 1
        if seqs and seq <= seqs[-1]:
            errors.append("frame %d: sequence %d not increasing" % (n, seq))
        if stamps and ts < stamps[-1]:
            errors.append("frame %d: timestamp %d goes backwards" % (n, ts))
        if dump is not None and dump[0] == n and np is not None:
            Image.fromarray(decode(fourcc, payload, w, h, stride), "RGB").save(dump[1])
            print("  dumped frame %d to %s" % (n, dump[1]))
        seqs.append(seq)
        stamps.append(ts)
        sizes.append(length)
        off = start + length
        n += 1
    if count and n != count:
        errors.append("frame_count %d but %d records" % (count, n))
    if off < len(data) and not errors:
        errors.append("%d trailing bytes after the last record" % (len(data) - off))

    fps = fnum / fden if fden else float("nan")
    dur = (stamps[-1] - stamps[0]) / 1e6 if stamps else 0.0
    print("  format %s %dx%d stride %d, fps %d/%d (%.3g), header frame_count %d"
          % (fourcc.decode("latin1"), w, h, stride, fnum, fden, fps, count))
    if sizes:
        print("  frames %d (seq %d..%d), duration %.3f s (last timestamp %d us), "
              "frame bytes min %d max %d avg %.0f, flagged %d%s"
              % (n, seqs[0], seqs[-1], dur, stamps[-1], min(sizes), max(sizes),
                 sum(sizes) / len(sizes), flagged,
                 (", jpeg modes %s" % ",".join(sorted(modes))) if modes else ""))
    for e in errors[:20]:
        print("  ERROR:", e)
    if len(errors) > 20:
        print("  ... %d more errors" % (len(errors) - 20))
    print("  OK" if not errors else "  FAILED (%d errors)" % len(errors))
    return not errors


def main():
    ap = argparse.ArgumentParser(description="validate .dcrec recordings")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--dump", nargs=2, metavar=("N", "OUT.png"))
    args = ap.parse_args()
    dump = (int(args.dump[0]), args.dump[1]) if args.dump else None
    ok = all([check(f, dump) for f in args.files])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
