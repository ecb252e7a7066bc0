#!/usr/bin/env bash
# scripts/build-deb.sh [aarch64|x86_64] — the dermcam .deb, from an already built binary (no
# second build), then checks of what is inside. Output: target/deb/dermcam_VERSION_ARCH.deb.
#
#   binary   $DERMCAM_BIN, default: aarch64 -> $CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/
#            release/dermcam (scripts/cross-test-aarch64.sh builds it), x86_64 -> target/release/
#            dermcam. Stripped of debug info into the package (release builds carry debug=1).
#   contents [package.metadata.deb] in Cargo.toml (the table cargo-deb reads): assets with
#            globs, conf-files, maintainer-scripts (debian/postinst, prerm, postrm), description.
#   tool     dpkg-deb --build on a staged tree. Not cargo-deb in CI: `cargo install cargo-deb
#            --locked --version 3.8.0` took 399 s here (2 shared cores, under load) on every
#            fresh machine, to do what dpkg-deb, always present, does in 2-5 s. cargo-deb 3.8.0
#            reads the same table (checked: `cargo deb --no-build --target
#            aarch64-unknown-linux-gnu` builds an equivalent package).
#            Compression gzip -6: measured 4.3 s for 29 MB vs xz -6 58 s for 25 MB (weights
#            barely compress), and every dpkg reads it.
#            Depends: is computed here instead: libc6 (>= the highest GLIBC_x.y symbol version
#            the binary needs), libgcc-s1 if it links libgcc_s, adduser (postinst).
#   checks   dpkg-deb -I/-c; the binary is ELF for ARCH (`file`); the unit, the default config
#            (and that it is a conffile), maintainer scripts (sh -n, executable); each model's
#            sha256 == its manifest's; every asset listed in Cargo.toml is in the package; and
#            the packaged binary itself, from the unpacked tree (under qemu-user for aarch64):
#            `dermcam check-model` on the packaged tiny model, and (x86_64, natively) a run of
#            the packaged desktop board found through ../share/dermcam beside the executable.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-aarch64}
case "$ARCH" in
    aarch64) DEB_ARCH=arm64; TRIPLE=aarch64-unknown-linux-gnu; STRIP=aarch64-linux-gnu-strip
             OBJDUMP=aarch64-linux-gnu-objdump; FILE_WANT="ARM aarch64"
             RUN=(qemu-aarch64-static -L /)  # Debian's arm64 multiarch libc (scripts/cross-test-aarch64.sh)
             DEF_BIN=${CARGO_TARGET_DIR:-target}/$TRIPLE/release/dermcam ;;
    x86_64)  DEF_BIN=target/release/dermcam; DEB_ARCH=amd64; STRIP=strip; OBJDUMP=objdump
             FILE_WANT="x86-64"; RUN=() ;;
    *) echo "usage: scripts/build-deb.sh [aarch64|x86_64]" >&2; exit 2 ;;
esac
BIN=${DERMCAM_BIN:-$DEF_BIN}
OUT_DIR=${DEB_OUT_DIR:-target/deb}
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "build-deb: $*" >&2; exit 1; }

[ -x "$BIN" ] || fail "no $ARCH dermcam binary at $BIN (build it first: scripts/cross-test-aarch64.sh, or cargo build --release; or set DERMCAM_BIN)"
for tool in dpkg-deb file "$STRIP" "$OBJDUMP" python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing (aarch64: gcc-aarch64-linux-gnu brings the binutils)"
done
[ ${#RUN[@]} -eq 0 ] || command -v "${RUN[0]}" >/dev/null || fail "${RUN[0]} is missing (qemu-user-static)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
STAGE=$TMP/stage
mkdir -p "$STAGE/DEBIAN" "$OUT_DIR"

# --- stage the assets of [package.metadata.deb] ---------------------------------------------
python3 - "$STAGE" "$BIN" "$DEB_ARCH" > "$TMP/meta.env" <<'EOF'
import glob, os, shutil, sys, tomllib
stage, binary, deb_arch = sys.argv[1:]
cargo = tomllib.load(open("Cargo.toml", "rb"))
pkg = cargo["package"]
deb = pkg["metadata"]["deb"]
listed = []
for src, dest, mode in deb["assets"]:
    if src == "target/release/dermcam":
        matches = [binary]          # the binary given, not whatever target/release holds
    else:
        matches = sorted(glob.glob(src))
        if not matches:
            sys.exit(f"build-deb: Cargo.toml [package.metadata.deb] asset {src!r} matches no file")
    for m in matches:
        d = dest + os.path.basename(m) if dest.endswith("/") else dest
        if src == "target/release/dermcam":
            d = dest + "dermcam"
        out = os.path.join(stage, d)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copyfile(m, out)
        os.chmod(out, int(mode, 8))
        listed.append("/" + d)
for s in ("postinst", "prerm", "postrm", "preinst"):
    p = os.path.join(deb["maintainer-scripts"], s)
    if os.path.exists(p):
        shutil.copyfile(p, os.path.join(stage, "DEBIAN", s))
        os.chmod(os.path.join(stage, "DEBIAN", s), 0o755)
with open(os.path.join(stage, "DEBIAN", "conffiles"), "w") as f:
    for c in deb["conf-files"]:
        if "/" + c.lstrip("/") not in listed:
            sys.exit(f"build-deb: conf-file {c} is not among the assets")
        f.write("/" + c.lstrip("/") + "\n")
with open(os.path.join(os.path.dirname(stage), "assets.txt"), "w") as f:
    f.write("\n".join(listed) + "\n")
q = lambda v: "'" + v.replace("'", "'\\''") + "'"
print(f"VERSION={q(pkg['version'])}")
print(f"MAINTAINER={q(deb['maintainer'])}")
print(f"SECTION={q(deb.get('section', 'misc'))}")
print(f"PRIORITY={q(deb.get('priority', 'optional'))}")
print(f"EXTRA_DEPENDS={q(', '.join(d.strip() for d in deb['depends'].split(',') if d.strip() != '$auto'))}")
print(f"SUMMARY={q(pkg['description'])}")
print(f"EXTENDED={q(deb['extended-description'])}")
print(f"HOMEPAGE={q(pkg.get('homepage', ''))}")
EOF
# shellcheck disable=SC1091
. "$TMP/meta.env"
"$STRIP" --strip-debug -o "$STAGE/usr/bin/dermcam" "$BIN"
chmod 0755 "$STAGE/usr/bin/dermcam"

# --- Depends: computed from the binary ---------------------------------------------------------
needed=$("$OBJDUMP" -p "$STAGE/usr/bin/dermcam" | awk '/NEEDED/ { print $2 }')
glibc=$("$OBJDUMP" -T "$STAGE/usr/bin/dermcam" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
[ -n "$glibc" ] || fail "no GLIBC symbol versions in $BIN: not a glibc binary?"
depends="libc6 (>= $glibc)"
case " $(echo $needed) " in *" libgcc_s.so.1 "*) depends="$depends, libgcc-s1" ;; esac
[ -z "$EXTRA_DEPENDS" ] || depends="$depends, $EXTRA_DEPENDS"
echo "build-deb: $BIN needs: $(echo $needed); Depends: $depends"

size_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
{
    echo "Package: dermcam"
    echo "Version: $VERSION"
    echo "Architecture: $DEB_ARCH"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $size_kb"
    echo "Depends: $depends"
    echo "Section: $SECTION"
    echo "Priority: $PRIORITY"
    [ -z "$HOMEPAGE" ] || echo "Homepage: $HOMEPAGE"
    echo "Description: $SUMMARY"
    printf '%s\n' "$EXTENDED" | fold -s -w 78 | sed 's/ *$//; s/^/ /'
} > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"

DEB=$OUT_DIR/dermcam_${VERSION}_${DEB_ARCH}.deb
rm -f "$DEB"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$STAGE" "$DEB" >/dev/null
echo "build-deb: built $DEB ($(du -k "$DEB" | cut -f1) KiB) in $(elapsed)s"

# --- checks on the built package ------------------------------------------------------------
pass=0
check() { # check DESCRIPTION CMD...: run CMD, count, stop at the first failure
    local what=$1; shift
    if "$@"; then pass=$((pass + 1)); echo "  ok   $what"; else echo "  FAIL $what ($DEB)" >&2; exit 1; fi
}
dpkg-deb -I "$DEB" > "$TMP/info"
dpkg-deb -c "$DEB" > "$TMP/contents"
X=$TMP/x
dpkg-deb -R "$DEB" "$X"
sed -n '/^ Package:/,$p' "$TMP/info" | sed 's/^/  | /'
check "control: Package dermcam, Architecture $DEB_ARCH, Version $VERSION" \
    grep -qE "^ Architecture: $DEB_ARCH\$" "$TMP/info"
check "control: Depends libc6 and adduser" grep -qE '^ Depends: libc6 \(>= [0-9.]+\).*adduser' "$TMP/info"
desc=$(file -b "$X/usr/bin/dermcam")
check "/usr/bin/dermcam is $FILE_WANT: $desc" grep -q "$FILE_WANT" <<<"$desc"
check "/usr/bin/dermcam is mode 0755 root:root" grep -qE '^-rwxr-xr-x root/root .* \./usr/bin/dermcam$' "$TMP/contents"
check "/usr/bin/dermcam has no debug info" \
    bash -c "! $OBJDUMP -h '$X/usr/bin/dermcam' | grep -q '\.debug_info'"
while read -r f; do
    [ -e "$X$f" ] || { echo "  FAIL asset $f listed in Cargo.toml is not in $DEB" >&2; exit 1; }
done < "$TMP/assets.txt"
check "all $(wc -l < "$TMP/assets.txt") assets of Cargo.toml [package.metadata.deb] present" true
check "unit /usr/lib/systemd/system/dermcam.service == systemd/dermcam.service" \
    cmp -s "$X/usr/lib/systemd/system/dermcam.service" systemd/dermcam.service
check "conffiles: /etc/dermcam/config.toml and /etc/default/dermcam" \
    bash -c "grep -qx /etc/dermcam/config.toml '$X/DEBIAN/conffiles' && grep -qx /etc/default/dermcam '$X/DEBIAN/conffiles'"
for s in postinst prerm postrm; do
    check "maintainer script $s: executable, sh -n" bash -c "[ -x '$X/DEBIAN/$s' ] && sh -n '$X/DEBIAN/$s'"
done
check "postinst creates the dermcam user and the gpio/spi groups" \
    bash -c "grep -q 'adduser --system --group' '$X/DEBIAN/postinst' && grep -q 'for g in gpio spi' '$X/DEBIAN/postinst'"
check "postrm removes /var/lib/dermcam on purge" grep -q 'rm -rf /var/lib/dermcam' "$X/DEBIAN/postrm"
n=0
for manifest in "$X"/usr/share/dermcam/models/*/*.toml; do
    want=$(sed -n 's/^sha256 *= *"\([0-9a-f]*\)".*/\1/p' "$manifest")
    model=$(sed -n 's/^model *= *"\([^"]*\)".*/\1/p' "$manifest")
    [ -n "$want" ] && [ -n "$model" ] || { echo "  FAIL $manifest has no model/sha256 line" >&2; exit 1; }
    got=$(sha256sum "$(dirname "$manifest")/$model" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "  FAIL ${manifest#"$X"}: $model has sha256 $got, manifest says $want" >&2; exit 1; }
    n=$((n + 1))
done
check "$n packaged models match the sha256 in their manifests" test "$n" -ge 4
check "packaged binary: dermcam check-model /usr/share/dermcam/models/test/tiny-int8.toml" \
    bash -c "${RUN[*]} '$X/usr/bin/dermcam' check-model '$X/usr/share/dermcam/models/test/tiny-int8.toml' >'$TMP/check-model.log' 2>&1 || { cat '$TMP/check-model.log'; exit 1; }"
if [ "$ARCH" = x86_64 ]; then
    # data_dirs(): the desktop board is found in ../share/dermcam beside the executable (cwd has
    # no boards/), its relative paths resolve against /usr/share/dermcam of the unpacked tree.
    check "packaged binary finds boards/desktop.toml in ../share/dermcam and runs it" \
        bash -c "cd '$TMP' && env -u DERMCAM_DATA_DIR '$X/usr/bin/dermcam' run --board desktop --frames 15 >run.log 2>&1 && test -s '$X/usr/share/dermcam/out/run/latest.png' || { cat run.log; exit 1; }"
fi
echo "build-deb: $DEB: $pass checks passed; $(elapsed)s in all"
