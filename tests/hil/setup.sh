#!/usr/bin/env bash
# tests/hil/setup.sh ARCH — prepare (idempotently, cached) everything the HIL VM needs:
#   - host tools from Debian: kmod cpio xz-utils gcc (+ gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#   - qemu-system-{x86,arm} 7.2 from bookworm, *extracted* into $HIL_CACHE/qemu (apt-get download +
#     dpkg-deb -x), because a plain install clashes with the preinstalled qemu-utils 10 here;
#     only qemu's shared-library dependencies are apt-installed (--no-upgrade, only if missing)
#   - the Debian kernel (.deb extracted, never installed), x86 vmlinux unpacked for PVH boot
#   - busybox-static for the guest arch (.deb extracted)
#   - a base initramfs (uncompressed newc cpio): busybox, the vivid + DRM/fbdev module chains,
#     /hil/modules.sh (insmod lines in dependency order)
# Prints `KEY=VALUE` lines (sourced by run.sh) on the last lines of stdout: QEMU, KERNEL, BASE_INITRD.
# Everything lives under $HIL_CACHE (default /var/cache/dermcam-hil, else target/hil-cache).
set -euo pipefail
ARCH=${1:?usage: setup.sh x86_64|aarch64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ -z "${HIL_CACHE:-}" ]; then
    if mkdir -p /var/cache/dermcam-hil 2>/dev/null && [ -w /var/cache/dermcam-hil ]; then
        HIL_CACHE=/var/cache/dermcam-hil
    else
        HIL_CACHE=$REPO/target/hil-cache
    fi
fi
mkdir -p "$HIL_CACHE/debs"
log() { printf '[hil-setup %s] %s\n' "$ARCH" "$*" >&2; }

case "$ARCH" in
    x86_64)  DEBARCH=amd64; KFLAVOUR=amd64; QPKG=qemu-system-x86; QBIN=qemu-system-x86_64 ;;
    aarch64) DEBARCH=arm64; KFLAVOUR=arm64; QPKG=qemu-system-arm; QBIN=qemu-system-aarch64 ;;
    *) echo "unknown arch $ARCH" >&2; exit 2 ;;
esac

APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
APT_UPDATED=0
apt_update_once() {
    if [ $APT_UPDATED = 0 ]; then $SUDO apt-get "${APT_OPTS[@]}" update -qq >&2; APT_UPDATED=1; fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install_missing() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    log "apt-get install ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT_OPTS[@]}" install -y -qq --no-upgrade \
        --no-install-recommends "${missing[@]}" >&2
}
# download a .deb (any arch) into the cache unless present; echo its path
deb_fetch() { # pkg[:arch]
    local spec=$1 name=${1%%:*} f
    f=$(ls "$HIL_CACHE/debs/${name}_"*.deb 2>/dev/null | grep -E "_(${2:-all|$DEBARCH|amd64})\.deb$" | head -n1 || true)
    if [ -z "$f" ]; then
        apt_update_once
        log "apt-get download $spec"
        (cd "$HIL_CACHE/debs" && apt-get "${APT_OPTS[@]}" -o APT::Sandbox::User=root download -qq "$spec" >&2)
        f=$(ls -t "$HIL_CACHE/debs/${name}_"*.deb | head -n1)
    fi
    echo "$f"
}

# ---------------------------------------------------------------- host tools
apt_install_missing kmod cpio xz-utils gcc libc6-dev python3
if [ "$ARCH" = aarch64 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64"
        $SUDO dpkg --add-architecture arm64; APT_UPDATED=0
    fi
    apt_install_missing gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi

# ---------------------------------------------------------------- qemu (extracted)
QROOT=$HIL_CACHE/qemu
if [ ! -x "$QROOT/usr/bin/$QBIN" ]; then
    # shared libraries qemu needs (they install fine; only qemu-system-* itself clashes)
    apt_update_once
    mapfile -t QDEPS < <(apt-cache depends --no-recommends --no-suggests "$QPKG" qemu-system-common \
        | awk '/^ *(\|)?Depends:/ {print $2}' | grep -v -E '^(qemu-|seabios|ipxe-qemu|<)' | sort -u)
    apt_install_missing "${QDEPS[@]}"
    mkdir -p "$QROOT"
    for p in "$QPKG" qemu-system-common qemu-system-data seabios; do
        f=$(deb_fetch "$p")
        log "extract $(basename "$f")"
        dpkg-deb -x "$f" "$QROOT"
    done
fi
QEMU=$QROOT/usr/bin/$QBIN
[ -x "$QEMU" ] || { echo "qemu not found at $QEMU" >&2; exit 1; }

# ---------------------------------------------------------------- kernel (extracted)
KDIR=$HIL_CACHE/$ARCH
mkdir -p "$KDIR"
if [ ! -s "$KDIR/kver" ]; then
    apt_update_once
    # the newest linux-image-6.1.0-N-<flavour> the meta package points at
    KPKG=$(apt-cache depends "linux-image-$KFLAVOUR:$DEBARCH" 2>/dev/null \
        | awk '/Depends: linux-image-6/ {print $2}' | sed 's/:.*//' | head -n1)
    [ -n "$KPKG" ] || { echo "cannot resolve kernel package for $DEBARCH" >&2; exit 1; }
    f=$(deb_fetch "$KPKG:$DEBARCH" "$DEBARCH")
    log "extract $(basename "$f")"
    rm -rf "$KDIR/root"; mkdir -p "$KDIR/root"
    dpkg-deb -x "$f" "$KDIR/root"
    KVER=$(ls "$KDIR/root/lib/modules" | head -n1)
    depmod -b "$KDIR/root" "$KVER"
    echo "$KVER" > "$KDIR/kver"
fi
KVER=$(cat "$KDIR/kver")
KROOT=$KDIR/root
if [ "$ARCH" = x86_64 ]; then
    KERNEL=$KDIR/vmlinux
    if [ ! -s "$KERNEL" ]; then
        # uncompressed ELF vmlinux (PVH entry) from the xz payload inside bzImage
        log "unpack vmlinux (xz payload of vmlinuz-$KVER)"
        python3 - "$KROOT/boot/vmlinuz-$KVER" "$KERNEL" <<'EOF'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
off = data.find(b'\xfd7zXZ\x00')
while off >= 0:
    try:
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[off:])
        if out[:4] == b'\x7fELF':
            open(sys.argv[2], 'wb').write(out); sys.exit(0)
    except lzma.LZMAError:
        pass
    off = data.find(b'\xfd7zXZ\x00', off + 1)
sys.exit("no xz-compressed ELF found in " + sys.argv[1])
EOF
    fi
else
    KERNEL=$KROOT/boot/vmlinuz-$KVER   # arm64 Image: already uncompressed
fi

# ---------------------------------------------------------------- busybox (guest arch)
BB=$HIL_CACHE/$ARCH/busybox
if [ ! -x "$BB" ]; then
    f=$(deb_fetch "busybox-static:$DEBARCH" "$DEBARCH")
    rm -rf "$KDIR/bb"; mkdir -p "$KDIR/bb"; dpkg-deb -x "$f" "$KDIR/bb"
    cp "$KDIR/bb/bin/busybox" "$BB"; rm -rf "$KDIR/bb"
fi

# ---------------------------------------------------------------- base initramfs
case "$ARCH" in
    x86_64)  MODS="vivid bochs" ;;
    aarch64) MODS="vivid virtio_pci virtio_gpu" ;;
esac
STAMP="$KVER|$MODS|$(sha256sum "$BB" "$0" | sha256sum | cut -c1-16)"
BASE=$KDIR/base.cpio
if [ ! -s "$BASE" ] || [ "$(cat "$KDIR/base.stamp" 2>/dev/null)" != "$STAMP" ]; then
    log "build base initramfs ($MODS)"
    STAGE=$KDIR/stage; rm -rf "$STAGE"
    mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,tmp,run,hil,lib/modules}
    cp "$BB" "$STAGE/bin/busybox"
    for a in sh mount mkdir sleep cat echo ls insmod poweroff reboot grep sed head tail dmesg \
             timeout cp chmod ln stat hexdump date uname setsid tr wc env true false mknod; do
        ln -sf busybox "$STAGE/bin/$a"
    done
    seen=" "
    add_modules() { # SCRIPT MODULE... : insmod lines in dependency order, each module once
        local script=$1 m kind path rest base opts args; shift
        : > "$script"
        for m in "$@"; do
            opts=""; [ "$m" = vivid ] && opts="n_devs=1 node_types=0x1 num_inputs=1 input_types=0"
            while read -r kind path rest; do
                [ "$kind" = insmod ] || continue          # "builtin x" lines need nothing
                base=$(basename "$path"); base=${base%.xz}; base=${base%.zst}
                case "$seen" in *" $base "*) continue ;; esac
                seen="$seen$base "
                case "$path" in
                    *.xz)  xz -dc "$path" > "$STAGE/lib/modules/$base" ;;
                    *.zst) zstd -qdc "$path" > "$STAGE/lib/modules/$base" ;;
                    *)     cp "$path" "$STAGE/lib/modules/$base" ;;
                esac
                args=""; [ "${base%.ko}" = "$m" ] && args=$opts
                echo "insmod /lib/modules/$base $args || echo \"HIL insmod-failed $base\"" >> "$script"
            done < <(modprobe -d "$KROOT" -S "$VERSION_FOR_MODPROBE" --show-depends "$m")
        done
    }
    VERSION_FOR_MODPROBE=$KVER
    add_modules "$STAGE/hil/modules.sh" $MODS
    # host<->guest folder (virtio-9p), loaded by init.sh only when the harness shares one
    add_modules "$STAGE/hil/modules-9p.sh" virtio_pci 9pnet_virtio 9p
    (cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) > "$BASE.tmp"
    mv "$BASE.tmp" "$BASE"
    echo "$STAMP" > "$KDIR/base.stamp"
    rm -rf "$STAGE"
fi

echo "QEMU=$QEMU"
echo "QROOT=$QROOT"
echo "KERNEL=$KERNEL"
echo "KVER=$KVER"
echo "BASE_INITRD=$BASE"
echo "HIL_CACHE=$HIL_CACHE"
