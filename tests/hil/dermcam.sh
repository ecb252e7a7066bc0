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
# TODO(dermcam V4L2 + fbdev): switch tests/hil/boards/hil-vm.toml to /dev/video0 + /dev/fb0 and
# set DERMCAM_SHOT_PATTERN to the line dermcam prints once its screen is drawn.
export DERMCAM_ARGS=${DERMCAM_ARGS:-run --board boards/hil-vm.toml --frames 10}
export DERMCAM_FILES=${DERMCAM_FILES:-tests/hil/boards/hil-vm.toml=boards/hil-vm.toml models/test recordings/lesion-mjpeg.dcrec}
export DERMCAM_CHECK=${DERMCAM_CHECK:-python3 $HERE/check_dermcam.py}
exec "$HERE/run.sh" "$ARCH"
