#!/usr/bin/env bash
# tests/hil/run.sh {x86_64|aarch64} — hardware-in-the-loop test in a qemu (TCG) VM.
# Exit 0 = pass. Prints timings; artifacts land in target/hil/<arch>/:
#   serial.log      whole serial console (kernel + "HIL ..." records)
#   probe.png/.ppm  QMP screendump after the probe drew on /dev/fb0
#   dermcam.log     dermcam's stdout+stderr (only with DERMCAM_BIN)
#   dermcam.png, dermcam-exit.png, dermcam-out/   (only with DERMCAM_BIN, see below)
#
# What it does: tests/hil/setup.sh installs what is missing (Debian packages; qemu extracted,
# kernel extracted, cached in $HIL_CACHE, default /var/cache/dermcam-hil) and builds the base
# initramfs (busybox-static, vivid + bochs/virtio-gpu module chains). This script compiles
# tests/hil/probe.c statically for the guest arch, packs a payload cpio (/init = init.sh,
# /hil/probe, optionally /hil/dermcam) appended to the base, boots the Debian kernel, loads
#   vivid n_devs=1 node_types=0x1 num_inputs=1 input_types=0      -> /dev/video0
#   bochs (x86_64, -device VGA) | virtio-gpu (aarch64 virt, cortex-a72)  -> /dev/fb0
# runs the probe (QUERYCAP, S_FMT YUYV 640x480, S_PARM 25 fps, mmap streaming, 30 frames,
# draws the last frame + reference bars on the fb) and tests/hil/vm.py checks the serial
# records and the screenshot pixels from the host.
#
# ===================== DERMCAM HOOK (interface) =====================
#   DERMCAM_BIN=path        dermcam binary for the VM's arch (e.g. target/release/dermcam,
#                           target/aarch64-unknown-linux-gnu/release/dermcam). Copied stripped
#                           to /hil/dermcam; if dynamically linked, its loader and libraries
#                           are copied in too (tests/hil/copy-libs.sh). Unset = probe only.
#   DERMCAM_ARGS="..."      its command line (word-split, no single quotes), run with cwd
#                           /hil/work, e.g. "run --board boards/hil-vm.toml --frames 10"
#   DERMCAM_FILES="a b=c"   extra files/folders copied into /hil/work: a repo-relative path
#                           keeps its path (models/test -> /hil/work/models/test), src=dest
#                           renames (tests/hil/boards/hil-vm.toml=boards/hil-vm.toml)
#   DERMCAM_TIMEOUT=60      seconds (guest clock) before dermcam is killed (rc 143)
#   DERMCAM_RC=0            expected exit code
#   DERMCAM_SHOT_PATTERN=RE when a dermcam output line matches RE the host takes a screenshot
#                           (dermcam.png) while dermcam still runs — print such a line once the
#                           screen is drawn and keep it up ~HIL_HOLD s. Another screenshot,
#                           dermcam-exit.png, is always taken after dermcam exits.
#   /hil/out (guest)        = target/hil/<arch>/dermcam-out/ on the host (virtio-9p share,
#                           emptied before each run): write overlays, recordings, JSON there
#   DERMCAM_HOOK=path       guest sh script (repo-relative or absolute), copied to /hil/hook.sh
#                           and run by init.sh in /hil/work after the share is mounted, just
#                           before dermcam starts (HIL hook-exit rc=N); it prepares devices and
#                           may leave drivers running in the background (tests/hil/gpio.sh)
#   DERMCAM_CHECK="cmd"     host command run after the built-in checks, with HIL_OUT set to
#                           target/hil/<arch>; non-zero fails the run. dermcam-specific checks
#                           (status lines in dermcam.log, overlay pixels in dermcam.png) go here.
#   HIL_SKIP_PROBE=1        skip the probe (dermcam only)
# The probe runs first (and releases /dev/video0 and the console) unless HIL_SKIP_PROBE=1.
# ====================================================================
# Other knobs: HIL_CACHE (cache folder), HIL_TIMEOUT (host seconds, default 120),
# HIL_HOLD (guest seconds a screen is held for the screenshot, default 3).
set -euo pipefail
ARCH=${1:?usage: tests/hil/run.sh x86_64|aarch64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/hil/$ARCH
mkdir -p "$OUT"
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- 1. host setup (cached) ----
SETUP_OUT=$("$HERE/setup.sh" "$ARCH")
eval "$(printf '%s\n' "$SETUP_OUT" | grep -E '^(QEMU|QROOT|KERNEL|KVER|BASE_INITRD|HIL_CACHE)=')"
echo "[hil] setup done in $(elapsed)s: kernel $KVER, qemu $QEMU"

# ---- 2. probe (static, guest arch) ----
case "$ARCH" in
    x86_64)  CC=gcc ;;
    aarch64) CC=aarch64-linux-gnu-gcc ;;
esac
PROBE=$OUT/probe
if [ ! -x "$PROBE" ] || [ "$HERE/probe.c" -nt "$PROBE" ]; then
    "$CC" -static -O2 -Wall -Wextra -Werror -o "$PROBE.tmp" "$HERE/probe.c"
    mv "$PROBE.tmp" "$PROBE"
fi

# ---- 3. payload cpio appended to the base initramfs ----
STAGE=$OUT/payload
rm -rf "$STAGE"
mkdir -p "$STAGE/hil/work" "$STAGE/hil/out"
install -m 0755 "$HERE/init.sh" "$STAGE/init"
install -m 0755 "$PROBE" "$STAGE/hil/probe"
VMARGS=()
QSHARE=()
{
    echo "HIL_HOLD='${HIL_HOLD:-3}'"
    echo "HIL_SKIP_PROBE='${HIL_SKIP_PROBE:-0}'"
} > "$STAGE/hil/config.env"
if [ -n "${DERMCAM_BIN:-}" ]; then
    # ============ DERMCAM HOOK: binary, arguments, extra files ============
    [ -f "$DERMCAM_BIN" ] || { echo "[hil] DERMCAM_BIN=$DERMCAM_BIN not found" >&2; exit 2; }
    # stripped copy (release builds carry debug info: 10x the size, slow to unpack under TCG)
    case "$ARCH" in x86_64) STRIP=strip ;; aarch64) STRIP=aarch64-linux-gnu-strip ;; esac
    "$STRIP" -o "$STAGE/hil/dermcam" "$DERMCAM_BIN" 2>/dev/null || cp "$DERMCAM_BIN" "$STAGE/hil/dermcam"
    chmod 0755 "$STAGE/hil/dermcam"
    # dynamically linked? copy its ELF interpreter and NEEDED libraries (recursively) from the
    # host (x86_64) or the cross libc (aarch64) into the guest: /lib*/ld-*.so and /hil/lib
    "$HERE/copy-libs.sh" "$ARCH" "$STAGE/hil/dermcam" "$STAGE"
    # DERMCAM_FILES: "path" keeps its repo-relative path under /hil/work, "src=dest" renames
    for spec in ${DERMCAM_FILES:-}; do
        src=${spec%%=*}; dest=${spec#*=}
        [ "$spec" = "$src" ] && dest=$src
        case "$dest" in /*) dest=$(basename "$dest") ;; esac
        case "$src" in /*) ;; *) src=$REPO/$src ;; esac
        mkdir -p "$(dirname "$STAGE/hil/work/$dest")"
        cp -r "$src" "$STAGE/hil/work/$dest"
    done
    if [ -n "${DERMCAM_HOOK:-}" ]; then
        hook=$DERMCAM_HOOK; case "$hook" in /*) ;; *) hook=$REPO/$hook ;; esac
        [ -f "$hook" ] || { echo "[hil] DERMCAM_HOOK=$DERMCAM_HOOK not found ($hook)" >&2; exit 2; }
        install -m 0755 "$hook" "$STAGE/hil/hook.sh"
    fi
    {
        printf "DERMCAM_ARGS='%s'\n" "${DERMCAM_ARGS:-}"
        echo "DERMCAM_TIMEOUT='${DERMCAM_TIMEOUT:-60}'"
    } >> "$STAGE/hil/config.env"
    VMARGS+=(--expect-dermcam --dermcam-rc "${DERMCAM_RC:-0}")
    [ -n "${DERMCAM_SHOT_PATTERN:-}" ] && VMARGS+=(--shot-pattern "$DERMCAM_SHOT_PATTERN")
    rm -rf "$OUT/dermcam-out"; mkdir -p "$OUT/dermcam-out"
    QSHARE=(-fsdev "local,id=hilout,path=$OUT/dermcam-out,security_model=none"
            -device "virtio-9p-pci,fsdev=hilout,mount_tag=hilout")
fi
[ "${HIL_SKIP_PROBE:-0}" = 1 ] && VMARGS+=(--no-probe)
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) > "$OUT/payload.cpio"
cat "$BASE_INITRD" "$OUT/payload.cpio" > "$OUT/initrd.cpio"
echo "[hil] payload ready in $(elapsed)s ($(du -k "$OUT/initrd.cpio" | cut -f1) KiB initramfs)"

# ---- 4. boot, drive, screenshot, check ----
APPEND="loglevel=4 panic=-1 rdinit=/init ${HIL_APPEND:-}"
case "$ARCH" in
    x86_64)
        QARGS=(-M pc -accel tcg -m 512 -smp 1 -nodefaults -no-reboot -display none
               -device VGA -L "$QROOT/usr/share/seabios" -L "$QROOT/usr/share/qemu"
               -kernel "$KERNEL" -initrd "$OUT/initrd.cpio"
               -append "console=ttyS0 $APPEND") ;;
    aarch64)
        QARGS=(-M virt -cpu cortex-a72 -accel tcg -m 512 -smp 1 -nodefaults -no-reboot
               -display none -device virtio-gpu-pci -L "$QROOT/usr/share/qemu"
               -kernel "$KERNEL" -initrd "$OUT/initrd.cpio"
               -append "console=ttyAMA0 $APPEND") ;;
esac
export QEMU_MODULE_DIR=$QROOT/usr/lib/$(gcc -print-multiarch)/qemu   # accel-tcg-*.so etc.
rc=0
python3 "$HERE/vm.py" --out "$OUT" --timeout "${HIL_TIMEOUT:-120}" "${VMARGS[@]}" -- \
    "$QEMU" "${QARGS[@]}" "${QSHARE[@]}" || rc=$?

if [ $rc = 0 ] && [ -n "${DERMCAM_BIN:-}" ] && [ -n "${DERMCAM_CHECK:-}" ]; then
    echo "[hil] DERMCAM_CHECK: $DERMCAM_CHECK"
    HIL_OUT=$OUT bash -c "$DERMCAM_CHECK" || rc=$?
fi
echo "[hil] $ARCH: $([ $rc = 0 ] && echo PASS || echo FAIL) in $(elapsed)s total"
exit $rc
