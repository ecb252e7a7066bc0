#!/bin/sh
# /init of the HIL VM (busybox sh, PID 1). Lives in the payload cpio, appended to the cached
# base initramfs (busybox + modules + /hil/modules.sh). Every line for the host starts "HIL ".
export PATH=/bin:/sbin
export LD_LIBRARY_PATH=/hil/lib   # libraries of a dynamically linked dermcam (copy-libs.sh)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /hil/out /hil/work
echo 1 > /proc/sys/kernel/printk          # keep kernel chatter off the serial protocol
up() { cut -d' ' -f1 /proc/uptime; }
echo "HIL boot uptime=$(up) kernel=$(uname -r) arch=$(uname -m)"
[ -f /hil/config.env ] && . /hil/config.env

. /hil/modules.sh
i=0
while { [ ! -e /dev/video0 ] || [ ! -e /dev/fb0 ]; } && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
echo "HIL nodes uptime=$(up) video=$(echo /dev/video*) fb=$(echo /dev/fb*) dri=$(echo /dev/dri/card*)"
for f in /sys/class/video4linux/*/name; do [ -e "$f" ] && echo "HIL v4l2 $(basename "$(dirname "$f")") name=$(cat "$f")"; done

PROBE_HOLD=${HIL_HOLD:-3}
[ -x /hil/dermcam ] && PROBE_HOLD=1      # the host screenshots within ~10 ms; dermcam is next
if [ "${HIL_SKIP_PROBE:-0}" != 1 ]; then
    /hil/probe --dev /dev/video0 --fb /dev/fb0 --frames "${HIL_FRAMES:-30}" --fps 25 --hold "$PROBE_HOLD"
    echo "HIL probe-exit rc=$? uptime=$(up)"
fi

# ---- dermcam hook (present only when run.sh was given DERMCAM_BIN) ----
if [ -x /hil/dermcam ]; then
    # /hil/out is the host's target/hil/<arch>/dermcam-out (virtio-9p): dermcam's files land there
    . /hil/modules-9p.sh
    if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 hilout /hil/out; then
        echo "HIL share /hil/out uptime=$(up)"
    else
        echo "HIL share-failed /hil/out"
    fi
    cd /hil/work
    # optional hook (run.sh DERMCAM_HOOK): prepares devices, may leave drivers in the background
    if [ -f /hil/hook.sh ]; then
        sh /hil/hook.sh
        echo "HIL hook-exit rc=$? uptime=$(up)"
    fi
    echo "HIL dermcam-start uptime=$(up) args=$DERMCAM_ARGS"
    # stdout+stderr go straight to the console; the host cuts them out between the
    # dermcam-start and dermcam-exit lines (target/hil/<arch>/dermcam.log)
    # shellcheck disable=SC2086  # word splitting of DERMCAM_ARGS is the interface
    timeout "${DERMCAM_TIMEOUT:-60}" /hil/dermcam $DERMCAM_ARGS
    rc=$?
    echo "HIL dermcam-exit rc=$rc uptime=$(up)"
    cd /
    sync
    umount /hil/out 2>/dev/null
    echo "HIL screenshot dermcam-exit"
    sleep "${HIL_HOLD:-3}"
fi
echo "HIL end uptime=$(up)"
poweroff -f
