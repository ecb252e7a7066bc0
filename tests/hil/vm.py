#!/usr/bin/env python3
"""Run the HIL VM, drive it over QMP, take screenshots, then check the results.

    vm.py --out DIR --timeout S [--shot-pattern REGEX] -- QEMU ARGV...

Python 3 standard library only. The guest speaks one-line records starting with "HIL " on the
serial console (tests/hil/init.sh, tests/hil/probe.c). Whenever a line "HIL screenshot NAME"
appears (or a dermcam output line matches --shot-pattern, giving NAME=dermcam) the host takes
a QMP screendump into DIR/NAME.ppm and DIR/NAME.png. "HIL end" (or the timeout) ends the VM.
Then the checks run (check_probe / check_dermcam below); exit 0 only if all pass.
"""
import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import zlib

T0 = time.monotonic()


def stamp():
    return f"{time.monotonic() - T0:6.2f}s"


# ----------------------------------------------------------------------------- images
def read_ppm(path):
    data = open(path, "rb").read()
    # P6\n<w> <h>\n<max>\n<rgb...>, header fields separated by whitespace
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    assert fields[0] == b"P6", f"{path}: not a binary PPM"
    w, h, mx = int(fields[1]), int(fields[2]), int(fields[3])
    assert mx == 255
    return w, h, data[pos:pos + w * h * 3]


def write_png(path, w, h, rgb):
    raw = b"".join(b"\x00" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)


def pixel(img, x, y):
    w, h, rgb = img
    i = (y * w + x) * 3
    return tuple(rgb[i:i + 3])


# ----------------------------------------------------------------------------- QMP
class QMP:
    def __init__(self, path, deadline, proc):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"no QMP socket (qemu rc={proc.poll()})")
                time.sleep(0.02)
        self.f = self.s.makefile("rwb", buffering=0)
        self.recv()  # greeting
        self.cmd("qmp_capabilities")

    def recv(self):
        while True:
            msg = json.loads(self.f.readline())
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        r = self.recv()
        if "error" in r:
            raise RuntimeError(f"QMP {name}: {r['error']}")
        return r.get("return")


# ----------------------------------------------------------------------------- run
def run_vm(args, qemu):
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "serial.log")
    sock = os.path.join(args.out, "qmp.sock")
    for p in (log_path, sock):
        if os.path.exists(p):
            os.unlink(p)
    for f in os.listdir(args.out):
        if f.endswith((".ppm", ".png")):
            os.unlink(os.path.join(args.out, f))
    qemu = qemu + ["-serial", f"file:{log_path}", "-qmp", f"unix:{sock},server=on,wait=off"]
    print(f"[{stamp()}] qemu: {' '.join(qemu)}", flush=True)
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.timeout
    timings, shots, pos, buf = {}, [], 0, b""
    in_dermcam = False
    pattern = re.compile(args.shot_pattern) if args.shot_pattern else None
    try:
        qmp = QMP(sock, deadline, proc)
        ended = False
        while not ended:
            if time.monotonic() > deadline:
                print(f"[{stamp()}] TIMEOUT after {args.timeout}s", flush=True)
                timings["timeout"] = True
                break
            if proc.poll() is not None:
                print(f"[{stamp()}] qemu exited rc={proc.returncode}", flush=True)
                break
            with open(log_path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if not lines:
                time.sleep(0.01)
                continue
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                name = None
                if line.startswith("HIL dermcam-exit"):
                    in_dermcam = False
                if in_dermcam:  # dermcam's own output, between dermcam-start and dermcam-exit
                    print(f"[{stamp()}] dermcam| {line}", flush=True)
                    if pattern and pattern.search(line) and "dermcam" not in shots:
                        name = "dermcam"
                elif line.startswith("HIL ") and not line.startswith("HIL frame "):
                    timings.setdefault(line.split()[1], time.monotonic() - T0)
                    if not line.startswith("HIL out"):
                        print(f"[{stamp()}] {line}", flush=True)
                if line.startswith("HIL dermcam-start"):
                    in_dermcam = True
                if line.startswith("HIL screenshot ") and not in_dermcam:
                    name = line.split()[2]
                if name:
                    ppm = os.path.join(args.out, f"{name}.ppm")
                    t = time.monotonic()
                    qmp.cmd("screendump", filename=os.path.abspath(ppm))
                    while not os.path.exists(ppm):  # screendump is synchronous; be safe
                        time.sleep(0.005)
                    shots.append(name)
                    print(f"[{stamp()}] screendump {name}.ppm ({(time.monotonic() - t) * 1000:.0f} ms)",
                          flush=True)
                if line.startswith("HIL end"):
                    ended = True
                # with nothing left to wait for, stop the VM right after the last screenshot
                if (name == "probe" and not args.expect_dermcam) or name == "dermcam-exit":
                    ended = True
        try:
            qmp.cmd("quit")
        except Exception:
            pass
    finally:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = proc.stdout.read().decode("utf-8", "replace")
        if out.strip():
            print(f"[{stamp()}] qemu output:\n{out}", flush=True)
    for name in shots:
        ppm = os.path.join(args.out, f"{name}.ppm")
        w, h, rgb = read_ppm(ppm)
        write_png(ppm[:-4] + ".png", w, h, rgb)
    timings["vm_total"] = time.monotonic() - T0
    return log_path, shots, timings


# ----------------------------------------------------------------------------- checks
class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def __call__(self, ok, what):
        if ok:
            self.passed += 1
            print(f"  ok   {what}")
        else:
            self.failed += 1
            print(f"  FAIL {what}")
        return ok


def kv(line):
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))


def classify(rgb, on=96, off=64):
    """'1'/'0' per channel for saturated colour-bar samples, '?' if ambiguous."""
    return "".join("1" if c >= on else "0" if c <= off else "?" for c in rgb)


def check_probe(c, lines, out, shots, driver="vivid"):
    cut = [i for i, l in enumerate(lines) if l.startswith("HIL dermcam-start")]
    lines = lines[:cut[0]] if cut else lines  # the probe's own records only
    get = lambda prefix: [l for l in lines if l.startswith(prefix)]
    cap = get("HIL querycap ")
    drv = kv(cap[0]).get("driver") if cap else None
    c(bool(cap) and (driver == "any" or drv == driver),
      f"VIDIOC_QUERYCAP driver is {driver} ({cap[0] if cap else 'missing'})")
    c(bool(cap) and kv(cap[0]).get("capture") == "1" and kv(cap[0]).get("streaming") == "1",
      "capture + streaming capabilities")
    fmt = get("HIL fmt ")
    f = kv(fmt[0]) if fmt else {}
    width, height = int(f.get("width", 0)), int(f.get("height", 0))
    bpl, size = int(f.get("bytesperline", 0)), int(f.get("sizeimage", 0))
    c(f.get("fourcc") == "YUYV" and (width, height) == (640, 480),
      f"VIDIOC_S_FMT negotiated YUYV 640x480 ({f.get('fourcc')} {width}x{height})")
    c(bpl >= width * 2 and size >= bpl * height, f"bytesperline={bpl} sizeimage={size} consistent")
    parm = get("HIL parm ")
    c(bool(parm) and kv(parm[0]).get("timeperframe") == "1/25", f"VIDIOC_S_PARM 25 fps ({parm[0] if parm else 'missing'})")
    frames = [kv(l) for l in get("HIL frame ")]
    c(len(frames) == 30, f"30 frames dequeued ({len(frames)})")
    c(all(int(fr["bytesused"]) == size for fr in frames) and frames,
      f"every frame bytesused == sizeimage ({size})")
    seqs = [int(fr["seq"]) for fr in frames]
    c(len(seqs) > 1 and all(b > a for a, b in zip(seqs, seqs[1:])), f"sequence numbers increase ({seqs[:3]}..{seqs[-1:]})")
    ts = [float(fr["ts"]) for fr in frames]
    c(len(ts) > 1 and all(b > a for a, b in zip(ts, ts[1:])), "timestamps increase")
    rate = get("HIL rate ")
    if rate:
        fps = float(kv(rate[0])["fps"])
        # guest clock under TCG is still the guest's own timeline: vivid paces by it
        c(15 <= fps <= 30, f"frame rate by timestamps {fps:.2f} fps (25 requested; 5 would mean S_PARM ignored)")
    expect = ["111", "110", "011", "010", "101", "100", "001", "000"]  # vivid 75% colour bar
    bars = get("HIL bars ")
    got = [classify(tuple(int(v) for v in s.split(","))) for s in bars[0].split()[2:]] if bars else []
    if drv == "vivid":  # other sources (real camera, v4l2loopback) show other pictures
        c(got == expect, f"captured frame shows vivid's colour bars W Y C G M R B K ({' '.join(got)})")
    c(bool(get("HIL probe ok")), "probe exit ok")

    fb = get("HIL fb ")
    if not fb and shots is None:  # --check-log of a probe run with --fb none
        return
    c(bool(fb), f"framebuffer opened ({fb[0][7:] if fb else 'missing'})")
    if not fb:
        return
    v = kv(fb[0])
    sw, sh = int(v["xres"]), int(v["yres"])
    if shots is None:  # --check-log: no screenshot to look at
        return
    c("probe" in shots, "screenshot taken after the probe drew")
    if "probe" not in shots:
        return
    img = read_ppm(os.path.join(out, "probe.ppm"))
    c((img[0], img[1]) == (sw, sh), f"screendump {img[0]}x{img[1]} == fb {sw}x{sh}")
    if (img[0], img[1]) != (sw, sh):
        return
    ref = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0),
           (255, 255, 255), (128, 128, 128)]
    y = (sh * 13 // 16 + sh) // 2
    bad = []
    for i, want in enumerate(ref):
        got_px = pixel(img, (2 * i + 1) * sw // 16, y)
        if max(abs(a - b) for a, b in zip(got_px, want)) > 8:
            bad.append((i, got_px, want))
    c(not bad, f"8 reference bars drawn stride-aware at y={y} ({bad or 'exact within 8'})")
    fw, fh = min(width, sw), min(height, sh * 3 // 4)
    got = [classify(pixel(img, (2 * i + 1) * fw // 16, fh // 2)) for i in range(8)]
    c(got == expect or drv != "vivid", f"captured frame blitted to the screen shows the colour bars ({' '.join(got)})")
    if fw < sw:
        c(pixel(img, (fw + sw) // 2, fh // 2) == (0, 0, 96), "navy panel right of the frame")


def check_dermcam(c, lines, out, shots, args):
    start = [i for i, l in enumerate(lines) if l.startswith("HIL dermcam-start")]
    end = [i for i, l in enumerate(lines) if l.startswith("HIL dermcam-exit")]
    c(bool(start) and bool(end), "dermcam ran in the VM")
    if not (start and end):
        return
    section = lines[start[0] + 1:end[0]]
    open(os.path.join(out, "dermcam.log"), "w").write("\n".join(section) + "\n")
    rc = int(kv(lines[end[0]]).get("rc", -1))
    c(rc == args.dermcam_rc, f"dermcam exit code {rc} (expected {args.dermcam_rc}; 143 = timeout)")
    if args.shot_pattern:
        c("dermcam" in shots, f"dermcam printed a line matching {args.shot_pattern!r}; screenshot dermcam.png")
    files = sorted(os.path.relpath(os.path.join(d, f), os.path.join(out, "dermcam-out"))
                   for d, _, fs in os.walk(os.path.join(out, "dermcam-out")) for f in fs)
    print(f"  info dermcam wrote {len(files)} file(s) under /hil/out: {' '.join(files[:8])}"
          f"{' ...' if len(files) > 8 else ''}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--shot-pattern", default="")
    ap.add_argument("--expect-dermcam", action="store_true")
    ap.add_argument("--dermcam-rc", type=int, default=0)
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--check-log", metavar="FILE",
                    help="no VM: only check a probe log captured elsewhere (real board, v4l2loopback)")
    ap.add_argument("--driver", default="vivid", help="expected VIDIOC_QUERYCAP driver, or 'any'")
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.check_log:
        lines = [l.rstrip("\r") for l in open(args.check_log, encoding="utf-8", errors="replace")]
        c = Checks()
        check_probe(c, [l.rstrip("\n") for l in lines], args.out, None, args.driver)
        print(f"hil: {c.passed} passed, {c.failed} failed")
        sys.exit(0 if c.failed == 0 and c.passed > 0 else 1)
    qemu = args.qemu[1:] if args.qemu[:1] == ["--"] else args.qemu
    try:
        log_path, shots, timings = run_vm(args, qemu)
    except (RuntimeError, OSError) as e:
        print(f"hil: VM failed: {e}\nhil: 0 passed, 1 failed")
        sys.exit(1)
    lines = [l.rstrip("\r") for l in open(log_path, encoding="utf-8", errors="replace").read().split("\n")]
    print(f"[{stamp()}] checks:")
    c = Checks()
    c(not timings.get("timeout"), "VM finished before the timeout")
    if not args.no_probe:
        check_probe(c, lines, args.out, shots, args.driver)
    if args.expect_dermcam:
        check_dermcam(c, lines, args.out, shots, args)
    keys = ["boot", "nodes", "querycap", "rate", "draw", "screenshot", "dermcam-start",
            "dermcam-exit", "end", "vm_total"]
    print("timings (s since qemu start): " + " ".join(
        f"{k}={timings[k]:.2f}" for k in keys if isinstance(timings.get(k), float)))
    print(f"artifacts: {args.out}/serial.log " + " ".join(f"{args.out}/{s}.png" for s in shots))
    print(f"hil: {c.passed} passed, {c.failed} failed")
    sys.exit(0 if c.failed == 0 and c.passed > 0 else 1)


if __name__ == "__main__":
    main()
