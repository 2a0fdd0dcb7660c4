#!/bin/sh
# `plugnet lr-find` on a slice of Fashion-MNIST: a table, suggestions and a
# PNG plot. Skipped (77) without the data (apt-get install dataset-fashion-mnist).
set -u
top=${PN_TOP_BUILDDIR:-.}
cli="$top/core/cli/plugnet"
data=/usr/share/datasets/fashion-mnist
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "SKIP: no $data"; exit 77; }
d=$(mktemp -d "${TMPDIR:-/tmp}/pn-lr-find.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; for f in "$d"/*.out "$d"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }

cat >"$d/p.yaml" <<YAML
pipeline: lr-find-mlp
seed: 3
backend: cpu
data:
  train: {type: idx, images: $data/train-images-idx3-ubyte.gz, labels: $data/train-labels-idx1-ubyte.gz, limit: 3000}
  batch: 64
model:
  input: [1, 28, 28]
  layers:
    - {name: flat, type: flatten}
    - {name: fc1, type: linear, out: 64}
    - {name: act, type: relu}
    - {name: fc2, type: linear, out: 10}
loss: {type: cross_entropy}
optimizer: {type: sgd, momentum: 0.9}
YAML

"$cli" lr-find "$d/p.yaml" --iters 80 -o "$d/lr.png" >"$d/run.out" 2>"$d/run.err" || fail "lr-find"
grep -q "^step   lr           smoothed_loss" "$d/run.out" || fail "no table"
grep -q "^suggested lr: [0-9.e+-]* (steepest descent), [0-9.e+-]* (minimum / 10)" "$d/run.out" ||
  fail "no suggestion"
grep -q "^plot: .*lr.png" "$d/run.out" || fail "the plot is not named"
# A PNG starts with \211 P N G \r \n \032 \n.
[ "$(od -An -tx1 -N8 "$d/lr.png" | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "lr.png is not a PNG"

# Bad usage: exit status 2 and a message naming the problem.
"$cli" lr-find >"$d/none.out" 2>"$d/none.err" && fail "no pipeline accepted"
[ $? -eq 2 ] || fail "no pipeline: exit status not 2"
grep -q "no pipeline given" "$d/none.err" || fail "no pipeline: no message"
"$cli" lr-find "$d/p.yaml" --iters 1 >"$d/iters.out" 2>"$d/iters.err" && fail "--iters 1 accepted"
grep -q -- "--iters wants" "$d/iters.err" || fail "--iters 1: no message"
"$cli" lr-find "$d/p.yaml" --start 1 --end 0.1 >"$d/range.out" 2>"$d/range.err" && fail "start > end accepted"
grep -q "start < end" "$d/range.err" || fail "start > end: no message"
echo "lr_find: all checks passed"
