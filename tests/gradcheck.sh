#!/bin/sh
# `plugnet gradcheck` on every layer and loss the bundled plugins provide, on
# the reference and cpu backends, plus parameter variants; then the check
# itself must fail on a layer whose backward is wrong (tests/badgrad).
set -u
top=${PN_TOP_BUILDDIR:-.}
cli="$top/core/cli/plugnet"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; cat "$out"; failures=$((failures + 1)); }

# expect_pass BACKEND FEATURE [ARGS...]
expect_pass() {
  backend=$1
  shift
  checks=$((checks + 1))
  "$cli" gradcheck "$@" --backend "$backend" >"$out" 2>&1
  st=$?
  if [ "$st" -ne 0 ] || ! grep -q "^gradcheck $1: passed" "$out"; then
    fail "gradcheck $* on $backend exited $st"
  fi
}

# Only the bundled plugins: the build tree's own, nothing from the caller.
unset PLUGNET_PLUGIN_PATH PLUGNET_BACKEND
features=$("$cli" plugins --kind layer | awk 'NR > 1 {print $1}'
  "$cli" plugins --kind loss | awk 'NR > 1 {print $1}')
for must in linear relu cross_entropy mse conv2d batch_norm max_pool2d; do
  echo "$features" | grep -qx "$must" || fail "plugins lists no '$must' (got: $features)"
done

for backend in reference cpu; do
  for f in $features; do expect_pass "$backend" "$f"; done
  expect_pass "$backend" linear --set bias=false
  expect_pass "$backend" linear --set out=7 --set init=kaiming_normal
  expect_pass "$backend" linear --input 2x3x4 --set init=xavier
  expect_pass "$backend" leaky_relu --set negative_slope=0.2
  expect_pass "$backend" leaky_relu --set negative_slope=1.5
  expect_pass "$backend" softmax --input 2x3x4 --set dim=1
  expect_pass "$backend" flatten --input 2x3x4x5 --set start_dim=2
  expect_pass "$backend" dropout --input 8x16 --set p=0.2
  # 6 rows over 5 classes: every class, so ignore_index=2 drops one row.
  expect_pass "$backend" cross_entropy --input 6x5 --set label_smoothing=0.1
  expect_pass "$backend" cross_entropy --input 6x5 --set ignore_index=2
  expect_pass "$backend" cross_entropy --input 6x5 --set label_smoothing=0.2,ignore_index=0
  expect_pass "$backend" cross_entropy --input 3x4x5
  expect_pass "$backend" mse --input 3x4x2
  # cnn layers
  expect_pass "$backend" conv2d --input 2x4x6x5 --set out=4,kernel=3,padding=1,stride=2,groups=2
  expect_pass "$backend" conv2d --input 2x3x7x6 --set out=2,kernel=[2,3],dilation=[2,1],bias=false
  expect_pass "$backend" conv2d --input 2x4x5x5 --set out=4,kernel=3,padding=1,groups=0,init=kaiming_normal
  expect_pass "$backend" batch_norm --input 4x3x5x5 --set affine=false
  expect_pass "$backend" batch_norm --input 6x4 --set eps=0.1
  expect_pass "$backend" max_pool2d --input 2x3x7x6 --set kernel=3,stride=2,padding=1,ceil_mode=true
  expect_pass "$backend" avg_pool2d --input 2x3x7x6 --set kernel=3,stride=2,padding=1,ceil_mode=true
  expect_pass "$backend" avg_pool2d --input 2x3x7x6 --set kernel=[3,2],padding=1,count_include_pad=false
  expect_pass "$backend" adaptive_avg_pool2d --input 2x3x7x5 --set size=[3,2]
  expect_pass "$backend" adaptive_max_pool2d --input 2x3x7x5 --set size=[3,2]
  expect_pass "$backend" adaptive_concat_pool2d --input 2x3x6x6 --set size=2
  expect_pass "$backend" concat --input 2x3x4x4 --set axis=-1
done

# A wrong gradient must be caught: exit 1, FAILED, the worst element named.
PLUGNET_PLUGIN_PATH="$top/tests/badgrad" "$cli" gradcheck badgrad >"$out" 2>&1
st=$?
[ "$st" -eq 1 ] || fail "gradcheck of a wrong backward exited $st, wanted 1"
grep -q "^gradcheck badgrad: FAILED.*worst input\[[0-9]*\]" "$out" ||
  fail "gradcheck of a wrong backward did not report FAILED with the element"

# Usage errors exit 2.
"$cli" gradcheck cpu >"$out" 2>&1
[ $? -eq 2 ] && grep -q "neither a layer nor a loss" "$out" || fail "gradcheck of a backend"
"$cli" gradcheck linear --set nosuch=1 >"$out" 2>&1
[ $? -eq 2 ] && grep -q "unknown parameter 'nosuch'" "$out" || fail "gradcheck with a bad --set"
"$cli" gradcheck linear --input 2xq >"$out" 2>&1
[ $? -eq 2 ] || fail "gradcheck with a bad --input"

[ "$failures" -eq 0 ] && echo "gradcheck: $checks checks passed and a wrong gradient failed"
[ "$failures" -eq 0 ]
