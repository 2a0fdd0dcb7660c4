#!/bin/sh
# The third-party plugin path, end to end: install plugnet into a DESTDIR,
# build tests/thirdparty/doubler.c against it with pkg-config only (no
# access to the source tree), then find it through PLUGNET_PLUGIN_PATH:
# `plugnet inspect` must show its schema, and thirdparty_use must run it
# forward and backward. Skips (77) only without pkg-config or a compiler.
set -u

: "${PN_TOP_SRCDIR:?run through make check}" "${PN_TOP_BUILDDIR:?run through make check}"
cc_cmd=${CC:-cc}
if ! command -v pkg-config >/dev/null 2>&1; then echo "SKIP: pkg-config not found"; exit 77; fi
if ! command -v "$cc_cmd" >/dev/null 2>&1; then echo "SKIP: no C compiler ($cc_cmd)"; exit 77; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plugnet-thirdparty.XXXXXX") || exit 1
cleanup() { chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fail() { echo "FAIL: $*"; exit 1; }

dest=$tmp/root
if ! ${MAKE:-make} -C "$PN_TOP_BUILDDIR" install DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log"
  fail "make install DESTDIR=$dest"
fi
pc=$(find "$dest" -name plugnet.pc | head -n 1)
test -n "$pc" || fail "no plugnet.pc under $dest"

# The .pc holds the configured paths; the sysroot maps them into DESTDIR.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
flags=$(pkg-config --cflags --libs plugnet) || fail "pkg-config --cflags --libs plugnet"
echo "pkg-config: $flags"

plugins=$tmp/plugins
mkdir "$plugins" || fail "mkdir $plugins"
plugins=$(cd "$plugins" && pwd -P) # the loader reports resolved paths
cp "$PN_TOP_SRCDIR/tests/thirdparty/doubler.c" "$PN_TOP_SRCDIR/tests/thirdparty/doubler.yaml" \
  "$plugins/" || fail "copying the doubler sources"
chmod u+w "$plugins"/*
# shellcheck disable=SC2086 # $flags is a list of words
(cd "$plugins" && "$cc_cmd" -shared -fPIC -o doubler.so doubler.c $flags) ||
  fail "compiling doubler.c against the installed plugnet"

PLUGNET_PLUGIN_PATH=$plugins
export PLUGNET_PLUGIN_PATH

"$PN_TOP_BUILDDIR/core/cli/plugnet" inspect doubler >"$tmp/inspect.out" 2>&1
status=$?
cat "$tmp/inspect.out"
test "$status" -eq 0 || fail "plugnet inspect doubler exited $status"
for want in "Plugin       doubler" "Version      1.2.3" "$plugins/doubler.so" \
  "$plugins/doubler.yaml" "Loaded       no" "Feature doubler (layer)" "factor" "float" \
  "[-1000, 1000]" "the multiplier"; do
  grep -F -q -- "$want" "$tmp/inspect.out" || fail "inspect output lacks '$want'"
done

"$PN_TOP_BUILDDIR/tests/thirdparty_use" || fail "thirdparty_use"
"$PN_TOP_BUILDDIR/core/cli/plugnet" gradcheck doubler --set factor=3 >"$tmp/gradcheck.out" 2>&1 ||
  { cat "$tmp/gradcheck.out"; fail "plugnet gradcheck doubler (a third-party layer)"; }
grep -q "passed" "$tmp/gradcheck.out" || fail "gradcheck doubler did not report passing"

# The complete example in docs/PLUGINS.md must build and be found as written.
docs=$tmp/docs
mkdir "$docs" || fail "mkdir $docs"
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$PN_TOP_SRCDIR/docs/PLUGINS.md" >"$docs/scaled_tanh.c"
awk '/^```yaml$/ {on=1; next} /^```$/ {on=0} on' "$PN_TOP_SRCDIR/docs/PLUGINS.md" >"$docs/scaled_tanh.yaml"
# shellcheck disable=SC2086
(cd "$docs" && "$cc_cmd" -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror \
  -o scaled_tanh.so scaled_tanh.c $flags) || fail "compiling the example of docs/PLUGINS.md"
PLUGNET_PLUGIN_PATH=$docs "$PN_TOP_BUILDDIR/core/cli/plugnet" inspect scaled_tanh >"$tmp/docs.out" 2>&1 ||
  { cat "$tmp/docs.out"; fail "plugnet inspect scaled_tanh (docs/PLUGINS.md)"; }
grep -q "gain" "$tmp/docs.out" || fail "the docs example's parameter 'gain' is not shown"
echo "PASS: third-party plugin built, inspected and run"
