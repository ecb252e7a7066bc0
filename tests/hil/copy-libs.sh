#!/usr/bin/env bash
# tests/hil/copy-libs.sh ARCH BINARY STAGE — make a dynamically linked BINARY runnable in the
# HIL guest (which has no libc): copy its ELF interpreter to the same absolute path under STAGE
# and every NEEDED library (recursively) into STAGE/hil/lib, which init.sh puts on
# LD_LIBRARY_PATH. Libraries come from the host (x86_64) or the cross libc (aarch64,
# libc6-dev-arm64-cross / gcc-aarch64-linux-gnu). Static binaries: nothing to do.
set -euo pipefail
ARCH=$1 BIN=$2 STAGE=$3
case "$ARCH" in
    x86_64)  DIRS="/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64" ;;
    aarch64) DIRS="/usr/aarch64-linux-gnu/lib /usr/aarch64-linux-gnu/lib64 /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu" ;;
esac
INTERP=$(readelf -l "$BIN" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$INTERP" ] || exit 0
find_lib() {
    local d
    for d in $DIRS; do [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }; done
    return 1
}
mkdir -p "$STAGE/hil/lib" "$STAGE$(dirname "$INTERP")"
src=$(find_lib "$(basename "$INTERP")") || { echo "copy-libs: interpreter $INTERP not found in $DIRS" >&2; exit 1; }
cp -L "$src" "$STAGE$INTERP"
todo=("$BIN") seen=" "
while [ ${#todo[@]} -gt 0 ]; do
    f=${todo[0]}; todo=("${todo[@]:1}")
    for lib in $(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        case "$seen" in *" $lib "*) continue ;; esac
        seen="$seen$lib "
        src=$(find_lib "$lib") || { echo "copy-libs: $lib (needed by $f) not found in $DIRS" >&2; exit 1; }
        cp -L "$src" "$STAGE/hil/lib/$lib"
        todo+=("$STAGE/hil/lib/$lib")
    done
done
echo "copy-libs: $(basename "$BIN") is dynamic: $INTERP +${seen% }" >&2
