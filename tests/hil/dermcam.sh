#!/usr/bin/env bash
# tests/hil/dermcam.sh {x86_64|aarch64} [DERMCAM_BIN] — run the real dermcam in the HIL VM
# (after the probe) with the hil-vm board and check its output (check_dermcam.py).
# Default binary: target/release/dermcam (x86_64) or
# target/aarch64-unknown-linux-gnu/release/dermcam (aarch64). Any DERMCAM_* variable set by
# the caller wins (see the top of run.sh).
set -euo pipefail
ARCH=${1:?usage: tests/hil/dermcam.sh x86_64|aarch64 [binary]}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
case "$ARCH" in
    x86_64)  DEF=$REPO/target/release/dermcam ;;
    aarch64) DEF=$REPO/target/aarch64-unknown-linux-gnu/release/dermcam ;;
    *) echo "unknown arch $ARCH" >&2; exit 2 ;;
esac
export DERMCAM_BIN=${2:-${DERMCAM_BIN:-$DEF}}
# dermcam captures from vivid's /dev/video0 through the real V4L2 ioctls (boards/hil-vivid.toml;
# boards/hil-vm.toml replays the bundled recording instead). The fbdev display is the device
# issue's: until then the overlay goes to PNG files the host checks.
export DERMCAM_ARGS=${DERMCAM_ARGS:-run --board boards/hil-vivid.toml --frames 40}
export DERMCAM_FILES=${DERMCAM_FILES:-tests/hil/boards/hil-vivid.toml=boards/hil-vivid.toml models/test}
export DERMCAM_CHECK=${DERMCAM_CHECK:-python3 $HERE/check_dermcam.py}
exec "$HERE/run.sh" "$ARCH"
