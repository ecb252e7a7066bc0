#!/usr/bin/env bash
# tests/hil/gpio.sh x86_64 [DERMCAM_BIN] — dermcam's real GPIO path (linux-embedded-hal CdevPin on
# the GPIO character device) in the HIL VM: the kernel's gpio-sim module (built out of tree for
# Debian's kernel by tests/hil/gpio-sim.sh, cached) gives a simulated chip; tests/hil/gpio-hook.sh
# creates it through configfs (line 0 button, line 1 LED) before dermcam starts with
# tests/hil/boards/hil-gpio.toml (looped recording, tiny model, null display, records in
# /hil/out/records), then presses the button by writing the line's `pull` attribute — short
# (freeze), long (save), short (live) — watches the LED line's value and stops dermcam with
# SIGTERM. tests/hil/check_gpio.py checks from the host: freeze, save and live logged in that
# order, one complete record folder (record.json + files, sha256s) on the host, the LED seen lit.
# GPIO_PRESSES (default "short long short"; "" = no press: the check must fail) sets the presses.
# Binary default as in dermcam.sh; DERMCAM_* set by the caller win.
set -euo pipefail
ARCH=${1:?usage: tests/hil/gpio.sh x86_64 [binary]}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ "$ARCH" = x86_64 ] || { echo "tests/hil/gpio.sh: only x86_64 (got $ARCH)" >&2; exit 2; }
MODS_OUT=$("$HERE/gpio-sim.sh" "$ARCH")
eval "$(printf '%s\n' "$MODS_OUT" | grep -E '^(GPIO_SIM_KO|CONFIGFS_KO)=')"
OUT=$REPO/target/hil/$ARCH
mkdir -p "$OUT"
printf "GPIO_PRESSES='%s'\n" "${GPIO_PRESSES-short long short}" > "$OUT/gpio.env"
export HIL_SKIP_PROBE=${HIL_SKIP_PROBE:-1}
export DERMCAM_ARGS=${DERMCAM_ARGS:-run --board boards/hil-gpio.toml}
export DERMCAM_FILES=${DERMCAM_FILES:-tests/hil/boards/hil-gpio.toml=boards/hil-gpio.toml models/test recordings/lesion-mjpeg.dcrec $CONFIGFS_KO=gpio/configfs.ko $GPIO_SIM_KO=gpio/gpio-sim.ko $OUT/gpio.env=gpio/gpio.env}
export DERMCAM_HOOK=${DERMCAM_HOOK:-tests/hil/gpio-hook.sh}
export DERMCAM_TIMEOUT=${DERMCAM_TIMEOUT:-90}
export DERMCAM_CHECK=${DERMCAM_CHECK:-python3 $HERE/check_gpio.py}
exec "$HERE/dermcam.sh" "$ARCH" "${2:-}"
