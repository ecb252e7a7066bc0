#!/usr/bin/env python3
"""Host checks for dermcam's run in the HIL VM (DERMCAM_CHECK of tests/hil/run.sh).

Reads $HIL_OUT (target/hil/<arch>): dermcam.log (its console output), dermcam-out/ (what it
wrote under /hil/out), dermcam.png / dermcam-exit.png (screenshots). Today dermcam runs the
hil-vm board (recording in, PNG out); extend this when the V4L2 source and fbdev display land:
negotiated format/rate in the log, the overlay drawn on dermcam.png (heatmap colours over the
lesion, text and bar regions, the state shown).
"""
import os
import re
import struct
import sys
import zlib

from checks import Checks

out = os.environ.get("HIL_OUT") or sys.argv[1]
checks = Checks("dermcam-hil")
check = checks.check


def png_size_and_colourful(path):
    """(w, h, fraction of saturated pixels) of an 8-bit RGB/RGBA PNG, standard library only."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6):
        return w, h, None
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, sat, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0, 0
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # PNG filters
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ft == 1: line[i] = (line[i] + a) & 255
            elif ft == 2: line[i] = (line[i] + b) & 255
            elif ft == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        if y % 8 == 0:
            rows += 1
            for x in range(0, w, 8):
                px = line[x * bpp:x * bpp + 3]
                sat += max(px) - min(px) > 80
    return w, h, sat / max(1, rows * ((w + 7) // 8))


log = open(os.path.join(out, "dermcam.log"), errors="replace").read()
check("panicked" not in log, "no panic in dermcam.log")
m = re.search(r"done: (\d+) frames composed .*?(\d+) analysed.*?(\d+) analysis errors", log)
check(m and int(m.group(1)) > 0 and int(m.group(2)) > 0 and int(m.group(3)) == 0,
      f"frames composed and analysed, no analysis errors ({m.group(0) if m else 'no summary line'})")
if "source: v4l2" in log:
    # The real V4L2 path: vivid's webcam input negotiated through S_FMT/S_PARM in the guest.
    check(re.search(r"negotiated YUYV 640x480 at 25 fps", log),
          "V4L2 format negotiated in the guest: YUYV 640x480 at 25 fps")
    check(re.search(r"source: v4l2 /dev/video0 \(vivid[^)]*\) YUYV 640x480 stride 1280", log),
          "dermcam streams /dev/video0 (vivid) with bytesperline 1280")
    check(m and int(m.group(1)) >= 5, "at least 5 camera frames composed")
latest = os.path.join(out, "dermcam-out", "run", "latest.png")
check(os.path.exists(latest), "overlay written: /hil/out/run/latest.png")
if os.path.exists(latest):
    w, h, colourful = png_size_and_colourful(latest)
    check(w > 0 and h > 0 and colourful is not None and colourful > 0.2,
          f"overlay {w}x{h} carries a heatmap ({colourful if colourful is None else round(colourful, 2)} saturated)")
checks.finish()
