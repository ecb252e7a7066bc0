#!/usr/bin/env bash
# tests/hil/screen.sh {x86_64|aarch64} [DERMCAM_BIN] — the real screen: dermcam in the HIL VM
# captures from vivid's /dev/video0 and draws on the DRM framebuffer /dev/fb0 (fbdev display,
# tests/hil/boards/hil-fbdev.toml); the host screenshots the framebuffer over QMP once a status
# line shows composed frames with analyses (dermcam.ppm/.png), and again after dermcam exits
# (dermcam-exit.ppm/.png), then tests/hil/check_screen.py checks the pixels: heatmap over the
# analysed square and not outside it, the class name and probability bar, the other classes'
# bars, the disclaimer line, the console back after exit. The probe is skipped (dermcam.sh
# runs it). Binary default as in dermcam.sh; DERMCAM_* set by the caller win.
set -euo pipefail
ARCH=${1:?usage: tests/hil/screen.sh x86_64|aarch64 [binary]}
HERE=$(cd "$(dirname "$0")" && pwd)
export HIL_SKIP_PROBE=${HIL_SKIP_PROBE:-1}
# 150 frames at 25 fps: long enough under TCG for several composed frames with a heatmap.
export DERMCAM_ARGS=${DERMCAM_ARGS:-run --board boards/hil-fbdev.toml --frames 150}
export DERMCAM_FILES=${DERMCAM_FILES:-tests/hil/boards/hil-fbdev.toml=boards/hil-fbdev.toml models/test}
export DERMCAM_SHOT_PATTERN=${DERMCAM_SHOT_PATTERN:-status: live .*composed ([5-9]|[1-9][0-9]+) analysed [1-9]}
export DERMCAM_CHECK=${DERMCAM_CHECK:-python3 $HERE/check_screen.py}
exec "$HERE/dermcam.sh" "$ARCH" "${2:-}"
