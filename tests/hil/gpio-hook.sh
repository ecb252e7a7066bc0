#!/bin/sh
# tests/hil/gpio-hook.sh — DERMCAM_HOOK of tests/hil/gpio.sh, runs in the guest (busybox sh) in
# /hil/work just before dermcam starts. It
#   1. loads configfs + the gpio-sim module (/hil/work/gpio/*.ko, tests/hil/gpio-sim.sh) and
#      creates a simulated chip through configfs: bank0 with line 0 "button", line 1 "led";
#   2. releases the button (pull-up: the board's button is active low) and points the board at
#      the chip if it is not gpiochip0;
#   3. leaves two background jobs: an LED monitor that prints "HIL gpio led=V" on every change
#      of line 1's value, and the driver: once the LED is lit (dermcam's pipeline runs) it makes
#      the presses in $GPIO_PRESSES (gpio/gpio.env: short = 0.3 s, long = 2 s, held by writing
#      pull-down / pull-up to sim_gpio0/pull), waits after a long press for a record folder in
#      /hil/out/records, then stops dermcam with SIGTERM.
# Every line for the host starts "HIL gpio"; problems are "HIL gpio-error ..." and exit 1.
G=/hil/work/gpio
BOARD=/hil/work/boards/hil-gpio.toml
up() { cut -d' ' -f1 /proc/uptime; }
fail() { echo "HIL gpio-error $*"; exit 1; }
GPIO_PRESSES="short long short"
[ -f "$G/gpio.env" ] && . "$G/gpio.env"

for m in configfs gpio-sim; do
    insmod "$G/$m.ko" || fail "insmod $G/$m.ko failed (see dmesg)"
done
[ -d /sys/kernel/config ] || fail "/sys/kernel/config missing after loading configfs"
mount -t configfs none /sys/kernel/config || fail "cannot mount configfs on /sys/kernel/config"
C=/sys/kernel/config/gpio-sim/hil
[ -d /sys/kernel/config/gpio-sim ] || fail "/sys/kernel/config/gpio-sim missing: gpio-sim not registered"
mkdir "$C" "$C/bank0" "$C/bank0/line0" "$C/bank0/line1" || fail "cannot create $C/bank0/line0,1"
echo 2 > "$C/bank0/num_lines" || fail "cannot write $C/bank0/num_lines"
echo hil-gpio > "$C/bank0/label" || fail "cannot write $C/bank0/label"
echo button > "$C/bank0/line0/name" || fail "cannot write $C/bank0/line0/name"
echo led > "$C/bank0/line1/name" || fail "cannot write $C/bank0/line1/name"
echo 1 > "$C/live" || fail "cannot write 1 to $C/live (see dmesg)"
dev=$(cat "$C/dev_name"); chip=$(cat "$C/bank0/chip_name")
S=/sys/devices/platform/$dev/$chip
BTN=$S/sim_gpio0
LED=$S/sim_gpio1
[ -w "$BTN/pull" ] && [ -r "$LED/value" ] || fail "$BTN/pull or $LED/value missing (dev=$dev chip=$chip)"
i=0
while [ ! -c "/dev/$chip" ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
[ -c "/dev/$chip" ] || fail "/dev/$chip did not appear"
echo pull-up > "$BTN/pull" || fail "cannot write pull-up to $BTN/pull"
if [ "$chip" != gpiochip0 ]; then
    sed -i "s|/dev/gpiochip0|/dev/$chip|g" "$BOARD" || fail "cannot point $BOARD at /dev/$chip"
fi
echo "HIL gpio chip=/dev/$chip sysfs=$S button=0 led=1 presses=${GPIO_PRESSES:-none} uptime=$(up)"

# LED monitor: every change of line 1 (dermcam drives it as an output)
(
    last=x
    while :; do
        v=$(cat "$LED/value")
        if [ "$v" != "$last" ]; then echo "HIL gpio led=$v uptime=$(up)"; last=$v; fi
        sleep 0.02
    done
) &

press() { # KIND SECONDS
    echo pull-down > "$BTN/pull" || echo "HIL gpio-error cannot write pull-down to $BTN/pull"
    echo "HIL gpio press $1 down uptime=$(up)"
    sleep "$2"
    echo pull-up > "$BTN/pull" || echo "HIL gpio-error cannot write pull-up to $BTN/pull"
    echo "HIL gpio press $1 up uptime=$(up)"
}
records() { for d in /hil/out/records/*/record.json; do [ -f "$d" ] && echo "$d"; done; }

# the driver
(
    i=0
    while [ "$(cat "$LED/value")" != 1 ] && [ $i -lt 1500 ]; do sleep 0.04; i=$((i + 1)); done
    [ "$(cat "$LED/value")" = 1 ] || echo "HIL gpio-error the LED ($LED) never lit in 60 s: dermcam not driving it"
    sleep 1
    for p in $GPIO_PRESSES; do
        case "$p" in
            short) press short 0.3; sleep 2 ;;
            long)
                before=$(records | wc -l)
                press long 2
                i=0
                while [ "$(records | wc -l)" -le "$before" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
                echo "HIL gpio records=$(records | wc -l) uptime=$(up)"
                sleep 1 ;;
            *) echo "HIL gpio-error unknown press $p in GPIO_PRESSES" ;;
        esac
    done
    sleep 2
    pid=$(pidof dermcam)
    echo "HIL gpio-driver done, SIGTERM to dermcam (pid ${pid:-none}) uptime=$(up)"
    [ -n "$pid" ] && kill -TERM $pid
) &
exit 0
