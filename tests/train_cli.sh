#!/bin/sh
# `plugnet train` as a user runs it: Ctrl-C saves a checkpoint and exits
# cleanly, --resume continues from it, `plan` prints the resolved pipeline,
# and a missing default dataset names the Debian package.
set -u
top=${PN_TOP_BUILDDIR:-.}
cli="$top/core/cli/plugnet"
d=$(mktemp -d "${TMPDIR:-/tmp}/pn-train-cli.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; for f in "$d"/*.out "$d"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }

"$top/tests/test_train" --make-data "$d" || fail "making the synthetic data set"

"$cli" plan "$d/p.yaml" --set model.layers.fc1.out=24 >"$d/plan.out" 2>"$d/plan.err" || fail "plan"
grep -q "name: fc1, type: linear, out: 24, bias: true" "$d/plan.out" || fail "plan lacks the override"

# A long run, interrupted once it is under way.
"$cli" train "$d/p.yaml" --set train.epochs=100000 --set train.progress=lines \
  --set checkpoint.path=ck.safetensors >"$d/run.out" 2>"$d/run.err" &
pid=$!
i=0
while ! grep -q "batch" "$d/run.err" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 300 ] || { kill -9 $pid; fail "no progress after 30 s"; }
  sleep 0.1
done
kill -INT $pid
wait $pid
st=$?
[ $st -eq 130 ] || fail "Ctrl-C: exit status $st, wanted 130"
[ -f "$d/ck.safetensors" ] || fail "Ctrl-C: no checkpoint written"
ls "$d" | grep -q '\.tmp\.' && fail "Ctrl-C: a temporary file was left behind"
grep -q "interrupted in epoch [0-9]*; checkpoint saved to .*ck.safetensors" "$d/run.err" ||
  fail "Ctrl-C: no message"
epoch=$(sed -n 's/.*interrupted in epoch \([0-9]*\);.*/\1/p' "$d/run.err")

# Resume and finish the epoch that was cut short, then one more.
"$cli" train "$d/p.yaml" --set train.epochs=$((epoch + 2)) --set checkpoint.path=ck.safetensors \
  --resume "$d/ck.safetensors" >"$d/resume.out" 2>"$d/resume.err" || fail "resume"
grep -q "^$((epoch + 1)) " "$d/resume.out" || fail "resume: no row for epoch $((epoch + 1))"
grep -q "^test: loss .*accuracy" "$d/resume.out" || fail "resume: no test result"

# A corrupt checkpoint is refused with its name.
head -c 100 "$d/ck.safetensors" >"$d/cut.safetensors"
"$cli" train "$d/p.yaml" --resume "$d/cut.safetensors" >"$d/cut.out" 2>"$d/cut.err" && fail "a truncated checkpoint was accepted"
grep -q "cut.safetensors" "$d/cut.err" || fail "truncated checkpoint: the message does not name it"
[ "$(wc -l <"$d/cut.err")" -eq 1 ] || fail "truncated checkpoint: the error is not one line"

# eval loads a checkpoint and reports.
"$cli" eval "$d/p.yaml" --checkpoint "$d/ck.safetensors" >"$d/eval.out" 2>"$d/eval.err" || fail "eval"
grep -q "^test: loss .*accuracy" "$d/eval.out" || fail "eval: no test result"
echo "train_cli: all checks passed"
