#!/usr/bin/env python3
"""Host checks of the real screen: dermcam drawing on /dev/fb0 in the HIL VM (fbdev display,
tests/hil/boards/hil-fbdev.toml), screenshot over QMP while it runs (dermcam.ppm) and after
it exits (dermcam-exit.ppm). Standard library only. Used by `tests/hil/dermcam.sh ARCH BIN
--screen` as DERMCAM_CHECK, with HIL_OUT=target/hil/<arch>.

The input is vivid's 75 % colour bars (W Y C G M R B K, 640x480), so every pixel of the frame
has a known colour unless dermcam drew over it. The frame is shown scaled to fit the screen
(aspect kept, centred), the analysed centre square outlined. Checked:
  - screenshot size == the framebuffer's (from dermcam.log);
  - heatmap: inside the analysed square, most pixels differ from the bar colour they would have
    (JET blended over the frame); outside it, on the white bar, the frame is untouched;
  - state: live with a result: the top band holds the class name in white text and the
    probability bar in the "confident" or "low confidence" colour; no error banner colour;
  - the other classes' bars (bottom left) in their colour, on the bar background;
  - the "screening aid - not a diagnosis" line: white text in the bottom band;
  - after exit the console is back: the screen no longer shows the overlay or the heatmap.
"""
import os
import re
import sys

from checks import Checks

out = os.environ.get("HIL_OUT") or sys.argv[1]
checks = Checks("dermcam-screen")
check = checks.check

# src/compose/overlay.rs colours
CONFIDENT, LOW, OTHER, BAR_BG, ERROR = (64, 200, 120), (255, 176, 32), (140, 170, 220), (70, 70, 70), (200, 30, 30)
# vivid's 75 % bars, left to right
BARS = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0)]
SRC_W, SRC_H = 640, 480


def read_ppm(path):
    data = open(path, "rb").read()
    fields, pos = [], 0
    while len(fields) < 4:  # P6, width, height, maxval (no comments from QEMU)
        while data[pos:pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P6" and fields[3] == b"255", f"{path}: not an 8-bit P6 PPM"
    w, h = int(fields[1]), int(fields[2])
    return w, h, data[pos + 1:pos + 1 + w * h * 3]


def near(a, b, tol):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def region(img, x0, y0, x1, y1, step=2):
    w, h, px = img
    for y in range(max(0, y0), min(h, y1), step):
        for x in range(max(0, x0), min(w, x1), step):
            i = (y * w + x) * 3
            yield x, y, (px[i], px[i + 1], px[i + 2])


def count(img, box, pred):
    return sum(1 for _, _, p in region(img, *box) if pred(p))


log = open(os.path.join(out, "dermcam.log"), errors="replace").read()
m = re.search(r"display: framebuffer \S+ \([^)]*\): (\d+)x(\d+) (\S+)", log)
check(m, f"dermcam drew on the framebuffer ({m.group(0) if m else 'no display: framebuffer line in dermcam.log'})")
check(re.search(r"status: live .*analysed [1-9]", log), "state in the log: live, frames analysed")
shot = os.path.join(out, "dermcam.ppm")
check(os.path.exists(shot), "screenshot taken while dermcam ran (dermcam.ppm)")
if not (m and os.path.exists(shot)):
    checks.finish()
W, H = int(m.group(1)), int(m.group(2))
img = read_ppm(shot)
check((img[0], img[1]) == (W, H), f"screenshot {img[0]}x{img[1]} == framebuffer {W}x{H}")

# Where the frame and the analysed square are: the frame scaled to fit, centred.
scale = min(W / SRC_W, H / SRC_H)
fw, fh = SRC_W * scale, SRC_H * scale
fx, fy = (W - fw) / 2, (H - fh) / 2
side = min(fw, fh)                      # crop_fraction 1: the centre square of the frame
cx, cy = fx + (fw - side) / 2, fy + (fh - side) / 2
bar_w = fw / 8


def bar_colour(x):
    k = int((x - fx) // bar_w)
    edge = min(abs(x - (fx + k * bar_w)), abs(x - (fx + (k + 1) * bar_w)))
    return BARS[k] if 0 <= k < 8 and edge > 4 else None


# Body of the frame, clear of vivid's text (top) and dermcam's panels (top band, bottom left).
body_y0, body_y1 = int(fy + 0.40 * fh), int(fy + 0.80 * fh)
inside = [(p, bar_colour(x)) for x, _, p in region(img, int(cx) + 6, body_y0, int(cx + side) - 6, body_y1, 3)]
inside = [(p, b) for p, b in inside if b is not None]
# changed = lit and not the bar colour: a black or frozen-grey screen does not count
changed = sum(1 for p, b in inside if not near(p, b, 40) and max(p) - min(p) > 50) / max(1, len(inside))
check(len(inside) > 1000 and changed > 0.5,
      f"heatmap over the analysed square: {changed:.0%} of {len(inside)} pixels are coloured unlike the bars (> 50 %)")
outside = [(p, bar_colour(x)) for x, _, p in region(img, int(fx) + 6, body_y0, int(cx) - 6, body_y1, 3)]
outside = [(p, b) for p, b in outside if b is not None]
same = sum(1 for p, b in outside if near(p, b, 12)) / max(1, len(outside))
check(len(outside) > 200 and same > 0.95,
      f"outside the analysed square the frame is untouched: {same:.0%} of {len(outside)} pixels are the bar colour (> 95 %)")

# The top band: class name (white text) and the probability bar.
band = (0, 0, W // 2, 50)
white = count(img, band, lambda p: min(p) >= 240)
check(white > 40, f"top band: the class name in white text ({white} white pixels)")
good = count(img, band, lambda p: near(p, CONFIDENT, 6))
low = count(img, band, lambda p: near(p, LOW, 6))
check(good + low > 200, f"top band: the probability bar ({good} confident + {low} low-confidence pixels)")
err = count(img, (0, 0, W, 60), lambda p: near(p, ERROR, 6))
check(err < 50, f"no model-error banner ({err} pixels of its colour)")

# The other classes, bottom left.
ranks = (0, int(H * 0.78), W // 3, int(H * 0.97))
other = count(img, ranks, lambda p: near(p, OTHER, 6))
bg = count(img, ranks, lambda p: near(p, BAR_BG, 6))
check(other > 20 and bg > 300, f"class bars bottom left: {other} bar pixels, {bg} bar-background pixels")

# The disclaimer line at the bottom.
foot = count(img, (int(W * 0.3), H - 24, int(W * 0.7), H), lambda p: min(p) >= 200)
check(foot > 100, f"'SCREENING AID - NOT A DIAGNOSIS' at the bottom ({foot} text pixels)")

# After exit: the console is back (text mode): the overlay and heatmap are gone.
exit_shot = os.path.join(out, "dermcam-exit.ppm")
if os.path.exists(exit_shot):
    e = read_ppm(exit_shot)
    kept = sum(1 for x, y, p in region(e, int(cx) + 6, body_y0, int(cx + side) - 6, body_y1, 3)
               if p == img[2][(y * W + x) * 3:(y * W + x) * 3 + 3] and max(p) > 40)
    check(kept < 0.05 * max(1, len(inside)),
          f"after exit the console is back: {kept} pixels of the overlay left on screen")
else:
    check(False, "screenshot after exit (dermcam-exit.ppm)")

checks.finish()
