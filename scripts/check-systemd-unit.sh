#!/usr/bin/env bash
# scripts/check-systemd-unit.sh [UNIT] [DERMCAM_BINARY] — checks systemd/dermcam.service:
#   1. `systemd-analyze verify` is clean: exit 0 AND no output at all (systemd 252 only warns,
#      exit 0, on unknown keys or bad values). Run with --root= on a staged root holding the
#      unit, /usr/bin/dermcam and this machine's own units (sysinit.target & co.), so no
#      system file is touched and no real /usr/bin/dermcam is needed.
#   2. `systemd-analyze security --offline=true`: overall exposure <= MAX_EXPOSURE (2.0);
#      prints the number and the items that count against it.
#   3. with a host dermcam binary (default target/release/dermcam, if present): the binary
#      classifies a still under the kernel's MDWE (prctl PR_SET_MDWE, REFUSE_EXEC_GAIN; Linux
#      >= 6.3), the same W^X rule MemoryDenyWriteExecute=yes enforces, with no network
#      namespace access needed (it opens no socket). Skipped, and said so, on older kernels.
# Installs systemd (for systemd-analyze) only if missing. Exit non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
UNIT=${1:-systemd/dermcam.service}
BIN=${2:-target/release/dermcam}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze missing: installing systemd"
    as_root=(); [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd
fi
[ -f "$UNIT" ] || { echo "check-systemd-unit: $UNIT not found" >&2; exit 2; }
systemd-analyze --version | head -n1

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
name=$(basename "$UNIT")

# --- 1. verify ---------------------------------------------------------------------------------
root=$TMP/root
mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin" "$root/etc/dermcam"
for d in /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$d" ] && cp -a "$d/." "$root/usr/lib/systemd/system/" && break
done
cp "$UNIT" "$root/usr/lib/systemd/system/$name"
printf '#!/bin/sh\nexit 0\n' > "$root/usr/bin/dermcam"
chmod 0755 "$root/usr/bin/dermcam"
out=$(systemd-analyze verify --root="$root" "$name" 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    echo "check-systemd-unit: systemd-analyze verify $UNIT: exit $rc, $(printf '%s' "$out" | grep -c '') line(s) of complaints (must be 0 and none)" >&2
    exit 1
fi
echo "verify: $UNIT is clean"

# --- 2. security -------------------------------------------------------------------------------
sec=$(systemd-analyze security --offline=true --no-pager "$UNIT" 2>&1) || true
exposure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
    printf '%s\n' "$sec" >&2
    echo "check-systemd-unit: no exposure level in the output of systemd-analyze security for $UNIT" >&2
    exit 1
fi
printf '%s\n' "$sec" | grep -E '^✗' | sed 's/  */ /g' || true
echo "security: overall exposure of $UNIT = $exposure (limit $MAX_EXPOSURE)"
if ! awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    echo "check-systemd-unit: exposure $exposure of $UNIT is above $MAX_EXPOSURE" >&2
    exit 1
fi

# --- 3. the binary under W^X (MemoryDenyWriteExecute=yes) ------------------------------------
if [ ! -x "$BIN" ]; then
    echo "W^X: no host binary at $BIN; skipped"
    exit 0
fi
python3 - "$BIN" <<'EOF'
import ctypes, os, sys
PR_SET_MDWE, PR_GET_MDWE, REFUSE_EXEC_GAIN = 65, 66, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print(f"W^X: PR_SET_MDWE not supported by kernel {os.uname().release} "
          f"({os.strerror(ctypes.get_errno())}); skipped")
    sys.exit(0)
assert libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) & REFUSE_EXEC_GAIN
# The rule is in force: a writable+executable mapping must be refused here.
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W^X: an RWX mapping was allowed under PR_SET_MDWE: this check proves nothing")
except PermissionError:
    pass
bin_ = sys.argv[1]
args = [bin_, "infer", "--json", "recordings/stills/lesion-a.jpg"]
print("W^X: running under PR_MDWE_REFUSE_EXEC_GAIN:", " ".join(args), flush=True)
os.execv(bin_, args)
EOF
echo "W^X: the binary ran with no writable+executable memory"
