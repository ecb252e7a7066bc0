#!/usr/bin/env python3
"""Host checks for tests/hil/gpio.sh (DERMCAM_CHECK): dermcam's controls on a gpio-sim chip.

Reads $HIL_OUT (target/hil/<arch>): serial.log (the hook's "HIL gpio ..." records), dermcam.log
(dermcam's console output) and dermcam-out/records/ (what it saved under /hil/out/records).
Passes only if the button presses made by tests/hil/gpio-hook.sh reached dermcam through the
GPIO character device (freeze, save, live logged in that order), exactly one complete screening
record folder arrived, and dermcam drove the LED line high at least once.
"""
import hashlib
import json
import os
import re
import sys

from checks import Checks

out = os.environ.get("HIL_OUT") or sys.argv[1]
checks = Checks("gpio-hil")
check = checks.check


serial = open(os.path.join(out, "serial.log"), errors="replace").read().splitlines()
log = open(os.path.join(out, "dermcam.log"), errors="replace").read()
gpio = [l for l in serial if l.startswith("HIL gpio")]
errors = [l for l in gpio if l.startswith("HIL gpio-error")]
check(not errors, "no HIL gpio-error from the hook" + (f" ({errors[0]})" if errors else ""))
chip = next((l for l in gpio if l.startswith("HIL gpio chip=")), None)
check(chip is not None, f"gpio-sim chip created ({chip or 'no HIL gpio chip= line in serial.log'})")
check(any(re.match(r"HIL hook-exit rc=0\b", l) for l in serial), "hook exited 0 (HIL hook-exit rc=0)")
presses = [l.split()[3] for l in gpio if re.match(r"HIL gpio press \w+ up", l)]
check(presses == ["short", "long", "short"], f"driver pressed short, long, short (saw {presses})")
leds = [l.split()[2] for l in gpio if l.startswith("HIL gpio led=")]
check("led=1" in leds, f"LED line driven high by dermcam (values seen: {' '.join(leds) or 'none'})")
check(any("HIL gpio-driver done" in l for l in gpio), "driver finished and stopped dermcam")

check("panicked" not in log, "no panic in dermcam.log")
check(not re.search(r"controls: .*line \d+ \(", log), "no GPIO line error in dermcam.log")
# the order of what dermcam logged: frozen, then save of the frozen frame, saved, then live
events = []
for line in log.splitlines():
    for key, pat in (("frozen", r"controls: frozen"), ("save", r"controls: save \(frozen frame\)"),
                     ("saved", r"saved screening record (\S+)"), ("live", r"controls: live")):
        if re.search(pat, line):
            events.append(key)
check(events == ["frozen", "save", "saved", "live"],
      f"dermcam logged frozen, save (frozen frame), saved record, live in order (saw {events})")
m = re.search(r"done: .* (\d+) records saved, (\d+) not saved( \(stopped by a signal\))?", log)
check(m and m.group(1) == "1" and m.group(2) == "0",
      f"summary: 1 record saved, 0 not saved ({m.group(0) if m else 'no done: line'})")
check(m and m.group(3), "dermcam stopped by the driver's SIGTERM, not by its timeout")

rdir = os.path.join(out, "dermcam-out", "records")
names = sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []
complete = [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(rdir, n))]
check(len(complete) == 1 and len(names) == 1,
      f"exactly one record folder in dermcam-out/records, no leftovers (found {names})")
saved = re.search(r"saved screening record /hil/out/records/(\S+)", log)
if complete:
    d = os.path.join(rdir, complete[0])
    check(saved and saved.group(1) == complete[0], f"record {complete[0]} is the one dermcam logged")
    files = sorted(os.listdir(d))
    check(files == ["cam.json", "frame.png", "overlay.png", "record.json"], f"record files {files}")
    try:
        rec = json.load(open(os.path.join(d, "record.json")))
    except (OSError, ValueError) as e:
        rec = {}
        check(False, f"record.json readable: {e}")
    check(rec.get("format") == "dermcam-record/1" and rec.get("board") == "hil-gpio",
          f"record.json format {rec.get('format')!r}, board {rec.get('board')!r}")
    probs = rec.get("probabilities") or {}
    check(probs and abs(sum(probs.values()) - 1) < 1e-3 and rec.get("top_class", {}).get("id") in probs,
          f"probabilities sum to 1 and top class {rec.get('top_class', {}).get('id')!r} is one of them")
    hashes = rec.get("files") or {}
    bad = [f for f, h in hashes.items()
           if not os.path.exists(os.path.join(d, f))
           or hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest() != h]
    check(sorted(hashes) == ["cam.json", "frame.png", "overlay.png"] and not bad,
          f"sha256 of cam.json, frame.png, overlay.png match record.json (mismatch: {bad})")
    for f in ("frame.png", "overlay.png"):
        p = os.path.join(d, f)
        check(os.path.exists(p) and open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"{f} is a PNG")
checks.finish()
