#!/bin/sh
# `plugnet predict` as a user runs it: after one epoch on a small generated
# PNG class folder (tests/cli_images), the top K classes with probabilities
# and the class groups of each image; a bad image gets its own line naming it
# and a non-zero exit while the others are still classified. The checkpoint
# holds the class names, so predicting needs no training data.
set -u
. "${PN_TOP_SRCDIR:-.}/tests/cli_expect.sh"
d=$(mktemp -d "${TMPDIR:-/tmp}/pn-predict.XXXXXX") || exit 1
trap 'rm -rf "$d" "$out" "$err"' EXIT

"$top/tests/cli_images" "$d" || { echo "FAIL: making the images"; exit 1; }
"$cli" train "$d/p.yaml" >"$d/train.out" 2>"$d/train.err" ||
  { echo "FAIL: training"; cat "$d/train.out" "$d/train.err"; exit 1; }
ck="$d/ck.safetensors"
[ -f "$ck" ] || { echo "FAIL: training wrote no checkpoint"; exit 1; }

# Checks a prediction line: IMAGE: K known classes with probabilities in
# [0, 1], descending, summing to at most 1, then both groups summing to 1.
check_line() { # IMAGE K LINE
  echo "$3" | awk -v img="$1" -v k="$2" '
    function bad(why) { print "bad line (" why "): " $0; exit 1 }
    {
      if (index($0, img ": ") != 1) bad("image");
      split(substr($0, length(img) + 3), halves, " -> ");
      n = split(halves[1], cls, ", ");
      if (n != k) bad(n " classes");
      sum = 0; last = 2;
      for (i = 1; i <= n; i++) {
        split(cls[i], f, " ");
        if (f[1] !~ /^(glass|metal|paper|trash)$/) bad("class " f[1]);
        if (f[2] < 0 || f[2] > 1 || f[2] > last) bad("probability " f[2]);
        sum += f[2]; last = f[2];
      }
      if (sum > 1.002) bad("sum " sum);
      if (split(halves[2], grp, ", ") != 2) bad("groups");
      gsum = 0;
      for (i = 1; i <= 2; i++) {
        split(grp[i], f, " ");
        if (f[1] !~ /^(recyclable|other)$/) bad("group " f[1]);
        gsum += f[2];
      }
      if (gsum < 0.997 || gsum > 1.003) bad("group sum " gsum);
    }' || fail "predict: $3"
}

g="$d/imgs/glass/00.png" t="$d/imgs/trash/05.png"
expect 0 "" -- predict "$d/p.yaml" --checkpoint "$ck" --top 2 "$g" "$t"
[ "$(wc -l <"$out")" -eq 2 ] || fail "predict: not one line per image"
check_line "$g" 2 "$(sed -n 1p "$out")"
check_line "$t" 2 "$(sed -n 2p "$out")"

# The default is 3; more than there are classes gives them all.
expect 0 "" -- predict "$d/p.yaml" --checkpoint "$ck" "$g"
check_line "$g" 3 "$(cat "$out")"
expect 0 "" -- predict "$d/p.yaml" --checkpoint "$ck" --top 9 "$g"
check_line "$g" 4 "$(cat "$out")"

# Bad images: each named on its own line on stderr; the good one still runs.
expect 1 "" -- predict "$d/p.yaml" --checkpoint "$ck" "$d/missing.png" "$d/bad/truncated.png" \
  "$g" "$d/bad/text.jpg"
[ "$(wc -l <"$err")" -eq 3 ] || fail "bad images: not one error line each"
grep -q "missing.png" "$err" || fail "no message for the missing image"
grep -q "truncated.png" "$err" || fail "no message for the truncated image"
grep -q "text.jpg.*not a JPEG or PNG" "$err" || fail "no message for the text file"
check_line "$g" 3 "$(cat "$out")"

# A group naming a class the data lacks, usage errors, a bad checkpoint.
expect 1 "no class 'glas' (did you mean 'glass'?)" -- predict "$d/p.yaml" --checkpoint "$ck" \
  --set "data.groups={recyclable: [glas], other: [trash]}" "$g"
expect 2 "which checkpoint" -- predict "$d/p.yaml" "$g"
expect 2 "which images" -- predict "$d/p.yaml" --checkpoint "$ck"
expect 2 "--top wants" -- predict "$d/p.yaml" --checkpoint "$ck" --top 0 "$g"
expect 1 "nosuch.safetensors" -- predict "$d/p.yaml" --checkpoint "$d/nosuch.safetensors" "$g"
[ "$(wc -l <"$err")" -eq 1 ] || fail "a missing checkpoint: the error is not one line"

# Training saved the class names and input shape in the checkpoint: with the
# data moved away, predictions are unchanged.
expect 0 "" -- predict "$d/p.yaml" --checkpoint "$ck" --top 4 "$g"
before=$(sed 's/^[^:]*://' "$out")
mv "$d/imgs" "$d/moved" || fail "moving the data away"
g="$d/moved/glass/00.png"
expect 0 "" -- predict "$d/p.yaml" --checkpoint "$ck" --top 4 "$g"
check_line "$g" 4 "$(cat "$out")"
[ "$(sed 's/^[^:]*://' "$out")" = "$before" ] || fail "predict without the data: another result"

[ "$failures" -eq 0 ] && echo "predict: all checks passed"
[ "$failures" -eq 0 ]
