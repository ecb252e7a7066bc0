#!/usr/bin/env bash
# tests/hil/gpio-sim.sh x86_64 — build (once, cached) the kernel's gpio-sim module for the HIL
# VM's Debian kernel and print `GPIO_SIM_KO=…` and `CONFIGFS_KO=…` (last lines of stdout).
#
# Debian's 6.1 kernel has neither CONFIG_GPIO_SIM nor CONFIG_GPIO_MOCKUP (nor CONFIG_IRQ_SIM,
# which both need), so gpio-sim is built out of tree from the very same kernel version:
#   - linux-headers-$KVER, linux-headers-…-common, linux-kbuild-6.1 and linux-source-6.1 at the
#     kernel image's exact package version are `apt-get download`ed into $HIL_CACHE/debs and
#     extracted (never installed) into $HIL_CACHE/<arch>/gpio-sim/;
#   - drivers/gpio/gpio-sim.c, drivers/gpio/gpiolib.h and kernel/irq/irq_sim.c are taken from
#     the source tarball; irq_sim.c is linked into the module (one change: the unexported
#     irq_to_desc() + handle_simple_irq() becomes generic_handle_irq(), the same path);
#   - `make M=…` against the extracted headers with the kernel's compiler (gcc-12).
# The module is unsigned (the kernel taints, it does not refuse: no MODULE_SIG_FORCE). It is
# only put into the initramfs of tests/hil/gpio.sh, never into the base initramfs.
set -euo pipefail
ARCH=${1:?usage: tests/hil/gpio-sim.sh x86_64}
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$ARCH" = x86_64 ] || { echo "gpio-sim.sh: only x86_64 is supported (got $ARCH)" >&2; exit 2; }
log() { printf '[hil-gpio-sim %s] %s\n' "$ARCH" "$*" >&2; }

SETUP_OUT=$("$HERE/setup.sh" "$ARCH")
eval "$(printf '%s\n' "$SETUP_OUT" | grep -E '^(KVER|HIL_CACHE)=')"
KROOT=$HIL_CACHE/$ARCH/root
CONFIGFS_KO=$KROOT/lib/modules/$KVER/kernel/fs/configfs/configfs.ko
[ -f "$CONFIGFS_KO" ] || { echo "gpio-sim.sh: $CONFIGFS_KO missing (kernel $KVER)" >&2; exit 1; }
grep -q '^CONFIG_CONFIGFS_FS=m' "$KROOT/boot/config-$KVER" \
    || { echo "gpio-sim.sh: kernel $KVER: CONFIG_CONFIGFS_FS is not a module" >&2; exit 1; }

GDIR=$HIL_CACHE/$ARCH/gpio-sim
KO=$GDIR/gpio-sim.ko
STAMP="$KVER|$(sha256sum "$0" | cut -c1-16)"
if [ ! -s "$KO" ] || [ "$(cat "$GDIR/stamp" 2>/dev/null)" != "$STAMP" ]; then
    mkdir -p "$GDIR"
    exec 9>"$GDIR.lock"
    flock 9      # another run may be building the same thing
    if [ ! -s "$KO" ] || [ "$(cat "$GDIR/stamp" 2>/dev/null)" != "$STAMP" ]; then
        # the kernel's compiler and kbuild's tools, apt-installed only if missing
        missing=()
        for p in make gcc-12 binutils libelf1 util-linux; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            log "apt-get install ${missing[*]}"
            SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
            $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
                --no-upgrade --no-install-recommends "${missing[@]}" >&2
        fi
        command -v gcc-12 >/dev/null || { echo "gpio-sim.sh: gcc-12 (the kernel's compiler) not found" >&2; exit 1; }
        command -v make >/dev/null || { echo "gpio-sim.sh: make not found" >&2; exit 1; }
        KDEB=$(ls "$HIL_CACHE/debs/linux-image-${KVER}_"*.deb 2>/dev/null | head -n1 || true)
        [ -n "$KDEB" ] || { echo "gpio-sim.sh: no linux-image-$KVER .deb in $HIL_CACHE/debs" >&2; exit 1; }
        PKGVER=$(dpkg-deb -f "$KDEB" Version)
        FLAVOUR=${KVER##*-}; ABI=${KVER%-"$FLAVOUR"}          # 6.1.0-57-amd64 -> 6.1.0-57, amd64
        SERIES=${KVER%%.0-*}                                  # 6.1
        want=("linux-headers-$KVER" "linux-headers-$ABI-common" "linux-kbuild-$SERIES" "linux-source-$SERIES")
        debs=()
        for p in "${want[@]}"; do
            f=$(ls "$HIL_CACHE/debs/${p}_${PKGVER}_"*.deb 2>/dev/null | head -n1 || true)
            if [ -z "$f" ]; then
                log "apt-get download $p=$PKGVER"
                (cd "$HIL_CACHE/debs" && apt-get -o Acquire::Retries=3 -o APT::Sandbox::User=root \
                    download -qq "$p=$PKGVER" >&2) \
                    || { echo "gpio-sim.sh: cannot download $p=$PKGVER (the kernel image's version)" >&2; exit 1; }
                f=$(ls "$HIL_CACHE/debs/${p}_${PKGVER}_"*.deb | head -n1)
            fi
            debs+=("$f")
        done
        W=$GDIR.tmp; rm -rf "$W"; mkdir -p "$W/kh" "$W/src" "$W/mod"
        for f in "${debs[@]:0:3}"; do log "extract $(basename "$f")"; dpkg-deb -x "$f" "$W/kh"; done
        KH=$W/kh/usr/src/linux-headers-$KVER
        # its Makefile includes /usr/src/linux-headers-…-common/Makefile: point it at our copy
        sed -i "s|^include /usr/src/|include $W/kh/usr/src/|" "$KH/Makefile"
        log "extract gpio-sim.c, gpiolib.h, irq_sim.c from $(basename "${debs[3]}")"
        dpkg-deb --fsys-tarfile "${debs[3]}" | tar -xO "./usr/src/linux-source-$SERIES.tar.xz" \
            | tar -xJ -C "$W/src" "linux-source-$SERIES/drivers/gpio/gpio-sim.c" \
                "linux-source-$SERIES/drivers/gpio/gpiolib.h" "linux-source-$SERIES/kernel/irq/irq_sim.c"
        S=$W/src/linux-source-$SERIES
        cp "$S/drivers/gpio/gpio-sim.c" "$W/mod/gpio-sim-main.c"
        cp "$S/drivers/gpio/gpiolib.h" "$S/kernel/irq/irq_sim.c" "$W/mod/"
        grep -q 'handle_simple_irq(irq_to_desc(irqnum));' "$W/mod/irq_sim.c" \
            || { echo "gpio-sim.sh: $S/kernel/irq/irq_sim.c changed: the irq_to_desc patch does not apply" >&2; exit 1; }
        sed -i 's|handle_simple_irq(irq_to_desc(irqnum));|generic_handle_irq(irqnum);|' "$W/mod/irq_sim.c"
        printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n' > "$W/mod/Kbuild"
        log "build gpio-sim.ko for $KVER"
        make -s -C "$KH" M="$W/mod" modules >&2 \
            || { echo "gpio-sim.sh: building gpio-sim.ko against $KH failed" >&2; exit 1; }
        strip --strip-debug -o "$W/gpio-sim.ko" "$W/mod/gpio-sim.ko"
        [ "$(modinfo -F vermagic "$W/gpio-sim.ko" | cut -d' ' -f1)" = "$KVER" ] \
            || { echo "gpio-sim.sh: $W/gpio-sim.ko: vermagic is not $KVER" >&2; exit 1; }
        rm -rf "$GDIR"; mkdir -p "$GDIR"
        mv "$W/gpio-sim.ko" "$KO"
        echo "$STAMP" > "$GDIR/stamp"
        rm -rf "$W"
    fi
    exec 9>&-
fi
echo "GPIO_SIM_KO=$KO"
echo "CONFIGFS_KO=$CONFIGFS_KO"
