#!/usr/bin/env bash
# Cross-build dermcam for aarch64-unknown-linux-gnu with Debian's toolchain (no Docker; see
# GUIDE §5) and run it under qemu-user:
#   1. install what is missing (arm64 dpkg architecture, rustc-web/cargo-web 1.96, the arm64
#      standard library, the cross gcc and libc, qemu-user-static; file and jq for the checks)
#   2. cross-build the crate, its binary and its tests in release
#   3. run the lib unit tests and the gradcam_fidelity, kernels, bad_input, config, screen,
#      display, spi_panel, camera and smoothing tests under qemu-aarch64-static (runner in
#      .cargo/config.toml), with Debian's arm64 libc and libturbojpeg0:arm64 (see step 4 below)
#   4. run the cross-built `dermcam infer --json` (tiny test model) on a bundled still under qemu
#      and compare it with the host binary: same top class, cam grid within 1e-4
#   5. `file` the binary: it must be ARM aarch64
# Exits non-zero on any failure. Timings are printed per step; timings under emulation say
# nothing about performance on a device.
#
# Left out by default:
#   - tests/zero_alloc.rs: 6 tests pushing 550+ frames each through the whole pipeline; under
#     qemu-user they take far longer than the rest together (measured: see CROSS_ZERO_ALLOC
#     below). Set CROSS_ZERO_ALLOC=1 to run them anyway.
#   - the tests that spawn the dermcam binary themselves (CARGO_BIN_EXE_dermcam): an emulated
#     process cannot exec another aarch64 binary unless binfmt_misc has a qemu-aarch64 handler,
#     which containers usually lack. They run when the handler is there; step 4 runs the binary
#     under qemu either way.
#
# No libclang: the cross build runs with LIBCLANG_PATH pointing at an empty folder and with
# `clang`/`llvm-config` on PATH replaced by stubs that fail loudly; before it, `cargo tree` must
# show no bindgen/clang-sys for the target, and the script reports whether a libclang.so is
# present on the machine at all (on CI machines: none; v4l2-sys-mit is patched with checked-in
# bindings, vendor/v4l2-sys-mit).
#
# Environment: CARGO_TARGET_DIR (default: target), DEB_CARGO/DEB_RUSTC (Debian's 1.96,
# default /usr/bin/cargo, /usr/bin/rustc), HOST_BIN (an existing host release binary for
# step 5: CI passes the one `cargo test --release` built; default: build one), CROSS_ZERO_ALLOC=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

TARGET=aarch64-unknown-linux-gnu
# Link against the cross sysroot, but *run* with Debian's arm64 multiarch libc (libc6:arm64 in
# /lib/aarch64-linux-gnu, `-L /`): under qemu-user (7.2 and 10.0 alike) a program loaded with the
# cross sysroot's ld.so/libc (libc6-arm64-cross) hangs at its first pthread_create, spinning at
# 100 % CPU (last syscalls rt_sigaction(33), rt_sigprocmask), while the same binary with the
# multiarch libc runs threads fine. The multiarch root also holds libturbojpeg0:arm64.
QEMU_ROOT=/
QEMU=(qemu-aarch64-static -L "$QEMU_ROOT")
DEB_CARGO=${DEB_CARGO:-/usr/bin/cargo}
DEB_RUSTC=${DEB_RUSTC:-/usr/bin/rustc}
DEB_RUSTDOC=${DEB_RUSTDOC:-/usr/bin/rustdoc}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
STILL=recordings/stills/lesion-a.jpg
MODEL=models/test/tiny-f32.toml
CAM_TOL=1e-4

TIMINGS=()
START=$(date +%s.%N)
# timed NAME CMD...: run CMD, print and remember how long it took.
timed() {
    local name=$1 t0 t1 dt
    shift
    printf '\n--- %s\n' "$name"
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf -- '--- %s: %ss\n' "$name" "$dt"
    TIMINGS+=("$(printf '%-56s %8ss' "$name" "$dt")")
}
summary() {
    local rc=${1:-$?}
    printf '\n=== cross-test-aarch64 timings (wall clock; emulated steps are not performance data)\n'
    local line
    for line in "${TIMINGS[@]}"; do printf '  %s\n' "$line"; done
    printf '  %-56s %8ss\n' total "$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    if [ "$rc" -eq 0 ]; then echo "cross-test-aarch64: OK"; else echo "cross-test-aarch64: FAILED (exit $rc)" >&2; fi
}
trap summary EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. packages -------------------------------------------------------------------------------
install_missing() {
    local as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    local missing=() p
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        "${as_root[@]}" dpkg --add-architecture arm64
    fi
    for p in rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross libc6:arm64 libturbojpeg0:arm64 qemu-user-static file jq; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all packages present"
        return
    fi
    echo "installing: ${missing[*]}"
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
timed "install missing packages" install_missing

"$DEB_CARGO" --version
"$DEB_RUSTC" --version
aarch64-linux-gnu-gcc --version | head -n1
qemu-aarch64-static --version | head -n1

# --- 2. host binary (reference for step 4) ---------------------------------------------------
# The host build uses whatever `cargo` is first on PATH (CI's toolchain), so in CI this reuses
# the release build the earlier steps made.
HOST_CARGO=$(command -v cargo || echo "$DEB_CARGO")
if [ -n "${HOST_BIN:-}" ]; then
    [ -x "$HOST_BIN" ] || { echo "HOST_BIN=$HOST_BIN is not an executable" >&2; exit 2; }
    echo "host reference binary: $HOST_BIN (given)"
else
    timed "host build (reference binary)" \
        env -u RUSTC -u RUSTDOC "$HOST_CARGO" build --release --quiet --bin dermcam
    HOST_BIN=$TARGET_DIR/release/dermcam
fi

# --- 3. cross build ----------------------------------------------------------------------------
# Debian's compiler explicitly (a rustup toolchain usually comes first on PATH), the cross gcc
# for crates that compile C, and the linker/runner also set here in case .cargo/config.toml is
# overridden.
export RUSTC=$DEB_RUSTC RUSTDOC=$DEB_RUSTDOC
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $QEMU_ROOT"

# No libclang anywhere in this build (see the top).
NOCLANG=$(mktemp -d)
trap 'rc=$?; rm -rf "$NOCLANG"; summary "$rc"' EXIT
mkdir -p "$NOCLANG/empty" "$NOCLANG/bin"
for t in clang clang++ llvm-config; do
    printf '#!/bin/sh\necho "cross-test-aarch64: $0 called during the build: the build must not need clang/libclang" >&2\nexit 1\n' \
        > "$NOCLANG/bin/$t"
    chmod +x "$NOCLANG/bin/$t"
done
export LIBCLANG_PATH=$NOCLANG/empty PATH=$NOCLANG/bin:$PATH
no_libclang() {
    local tree
    tree=$("$DEB_CARGO" tree --target "$TARGET" -e normal,build --prefix none) ||
        { echo "cargo tree failed" >&2; return 1; }
    if grep -E '^(bindgen|clang-sys) ' <<<"$tree"; then
        echo "the dependency graph for $TARGET has bindgen/clang-sys: the build needs libclang" >&2
        return 1
    fi
    echo "dependency graph for $TARGET: $(wc -l <<<"$tree") crates, no bindgen, no clang-sys"
    local found
    found=$( { ldconfig -p 2>/dev/null | grep -o '/[^ ]*libclang\.so[^ ]*' || true
               ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* /usr/lib/*/libclang-[0-9]*.so* 2>/dev/null || true; } | sort -u)
    if [ -n "$found" ]; then
        echo "libclang on this machine (hidden from the build by LIBCLANG_PATH=$LIBCLANG_PATH): $found"
    else
        echo "no libclang.so on this machine at all"
    fi
    echo "LIBCLANG_PATH=$LIBCLANG_PATH (empty); clang, clang++, llvm-config on PATH are failing stubs"
}
timed "no libclang: dependency graph, LIBCLANG_PATH, PATH" no_libclang
# cross_cargo SUBCOMMAND ARGS... [-- TEST-ARGS]: the flags go right after the subcommand, so
# they reach cargo and not the test binaries after `--`.
cross_cargo() { local sub=$1; shift; "$DEB_CARGO" "$sub" --release --target "$TARGET" "$@"; }

timed "cross build: lib, bin, tests (release)" cross_cargo test --no-run
timed "cross build: dermcam binary" cross_cargo build --bin dermcam
ARM_BIN=$TARGET_DIR/$TARGET/release/dermcam

# --- 4. tests under qemu-user ------------------------------------------------------------------
SKIP=()
if ! grep -qsx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    echo "no binfmt_misc handler for aarch64: skipping the tests that exec the dermcam binary"
    for t in infer_json_answers_for_good_images_and_names_the_bad_one \
        check_model_cli_reports_good_and_bad_manifests \
        run_cli_with_board_and_config_writes_png_overlays; do
        SKIP+=(--skip "$t")
    done
fi
# A hung emulated process would ignore SIGTERM (dermcam handles it): KILL after
# CROSS_QEMU_TIMEOUT seconds. zero_alloc pushes thousands of frames through the default model:
# far too slow emulated, so opt-in (CROSS_ZERO_ALLOC=1); the threaded pipeline also runs on
# aarch64 in the HIL VM (tests/hil/dermcam.sh aarch64, tests/hil/screen.sh aarch64).
QEMU_TIMEOUT=${CROSS_QEMU_TIMEOUT:-900}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="timeout -s KILL $QEMU_TIMEOUT qemu-aarch64-static -L $QEMU_ROOT"
timed "tests under qemu: lib, gradcam_fidelity, kernels, bad_input, config, screen, display, spi_panel, camera, smoothing" \
    cross_cargo test --lib --test gradcam_fidelity --test kernels --test bad_input --test config \
    --test screen --test display --test spi_panel --test camera --test smoothing -- "${SKIP[@]}"
if [ "${CROSS_ZERO_ALLOC:-0}" = 1 ]; then
    timed "tests under qemu: zero_alloc" cross_cargo test --test zero_alloc -- "${SKIP[@]}"
fi

# --- 5. the binary under qemu vs the host binary ---------------------------------------------
TMP=$(mktemp -d)
trap 'rc=$?; rm -rf "$TMP" "$NOCLANG"; summary "$rc"' EXIT
# The tiny test model: the default EfficientNet-Lite0 does not finish one inference in 9 min
# under emulation (GUIDE 5).
infer_host() { "$HOST_BIN" infer --json --model "$MODEL" "$STILL" >"$TMP/host.json"; }
infer_arm() { timeout -s KILL "$QEMU_TIMEOUT" "${QEMU[@]}" "$ARM_BIN" infer --json --model "$MODEL" "$STILL" >"$TMP/arm.json"; }
timed "host: dermcam infer --json --model $MODEL $STILL" infer_host
timed "qemu: dermcam infer --json --model $MODEL $STILL" infer_arm
compare() {
    jq -c '{top_class, top_probability, cam_class, cam: {height: .cam.height, width: .cam.width}}' \
        "$TMP/host.json" "$TMP/arm.json"
    jq -n -e -r --slurpfile h "$TMP/host.json" --slurpfile a "$TMP/arm.json" --argjson tol "$CAM_TOL" '
        def abs: if . < 0 then -. else . end;
        $h[0] as $x | $a[0] as $y
        | ($x.cam.values | length) as $n
        | (if $n == ($y.cam.values | length) and $n > 0
           then [range(0; $n) | ($x.cam.values[.] - $y.cam.values[.]) | abs] | max
           else null end) as $d
        | "top_class host=\($x.top_class) aarch64=\($y.top_class); cam \($x.cam.height)x\($x.cam.width), max |diff| = \($d) (tolerance \($tol))",
          ($x.top_class == $y.top_class and $x.cam_class == $y.cam_class
           and $x.cam.height == $y.cam.height and $x.cam.width == $y.cam.width
           and $d != null and $d <= $tol)' |
        { read -r line; echo "$line"; read -r ok; [ "$ok" = true ] || { echo "MISMATCH between host and aarch64 output" >&2; exit 1; }; }
}
timed "compare host vs aarch64 output" compare

# --- 6. it is an aarch64 binary ---------------------------------------------------------------
check_file() {
    local desc
    desc=$(file -b "$ARM_BIN")
    echo "$ARM_BIN: $desc"
    case $desc in *"ARM aarch64"*) ;; *) echo "not an ARM aarch64 binary" >&2; return 1 ;; esac
}
timed "file: binary is ARM aarch64" check_file
