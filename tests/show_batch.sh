#!/bin/sh
# `plugnet show-batch` as a user runs it, on a small generated PNG class
# folder (tests/cli_images): a PNG grid whose size the layout fixes, the same
# file for the same epoch, another for another epoch, the validation samples,
# and one-line errors.
set -u
. "${PN_TOP_SRCDIR:-.}/tests/cli_expect.sh"
d=$(mktemp -d "${TMPDIR:-/tmp}/pn-show-batch.XXXXXX") || exit 1
trap 'rm -rf "$d" "$out" "$err"' EXIT

"$top/tests/cli_images" "$d" || { echo "FAIL: making the images"; exit 1; }

# "W H" of a PNG, from its IHDR chunk, or "bad" without the PNG signature.
png_size() {
  sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
  [ "$sig" = "89504e470d0a1a0a" ] || { echo bad; return; }
  od -An -tu1 -j16 -N8 "$1" |
    awk '{ printf "%d %d\n", (($1*256+$2)*256+$3)*256+$4, (($5*256+$6)*256+$7)*256+$8 }'
}

# 16x16 samples are magnified 4 times; a cell is 64 wide and 64 + 13 (the
# label) high, with 8 pixels around and between cells.
expect 0 "wrote $d/grid.png (3x3 samples, 16x16)" -- show-batch "$d/p.yaml" -o "$d/grid.png"
[ "$(png_size "$d/grid.png")" = "224 263" ] || fail "3x3 grid: size $(png_size "$d/grid.png")"

expect 0 "(2x4 samples, 16x16)" -- show-batch "$d/p.yaml" -o "$d/wide.png" --rows 2 --cols 4
[ "$(png_size "$d/wide.png")" = "296 178" ] || fail "2x4 grid: size $(png_size "$d/wide.png")"

# 36 training images fill 3 rows and a half of 10.
expect 0 "(36 samples in 4x10, 16x16)" -- show-batch "$d/p.yaml" -o "$d/all.png" --rows 10 --cols 10
[ "$(png_size "$d/all.png")" = "728 348" ] || fail "4x10 grid: size $(png_size "$d/all.png")"

# The loader's order and augmentation are a function of (seed, epoch).
expect 0 "wrote" -- show-batch "$d/p.yaml" -o "$d/again.png"
cmp -s "$d/grid.png" "$d/again.png" || fail "the same epoch drew a different grid"
expect 0 "wrote" -- show-batch "$d/p.yaml" -o "$d/epoch1.png" --epoch 1
cmp -s "$d/grid.png" "$d/epoch1.png" && fail "epoch 1 drew the same grid as epoch 0"

# The validation split (12 of 48 images) through the validation transforms.
expect 0 "(3x3 samples, 16x16)" -- show-batch "$d/p.yaml" -o "$d/valid.png" --valid
[ "$(png_size "$d/valid.png")" = "224 263" ] || fail "valid grid: size $(png_size "$d/valid.png")"

# Without -o: show_batch.png in the current directory.
(cd "$d" && "$cli" show-batch p.yaml >"$out" 2>"$err") || fail "show-batch without -o"
[ "$(png_size "$d/show_batch.png")" = "224 263" ] || fail "default output missing or wrong"

# Progressive resizing: --stage N shows the size stage N trains at (stage 2
# keeps stage 1's 24, stage 3 goes back to none given: still 24).
sed 's/^train: .*/train: {progress: off, stages: [{epochs: 1}, {epochs: 1, size: 24}, {epochs: 1}]}/' \
  "$d/p.yaml" >"$d/staged.yaml"
expect 0 "(3x3 samples, 16x16)" -- show-batch "$d/staged.yaml" -o "$d/s1.png" --stage 1
expect 0 "(3x3 samples, 24x24)" -- show-batch "$d/staged.yaml" -o "$d/s2.png" --stage 2
expect 0 "(3x3 samples, 24x24)" -- show-batch "$d/staged.yaml" -o "$d/s3.png" --stage 3 --valid
expect 1 "has 3 stages" -- show-batch "$d/staged.yaml" -o "$d/s4.png" --stage 4
expect 2 "--stage wants" -- show-batch "$d/staged.yaml" --stage 0

expect 2 "unknown option '--bogus'" -- show-batch "$d/p.yaml" --bogus 1
expect 2 "--rows and --cols" -- show-batch "$d/p.yaml" --rows 0
expect 1 "nosuch.yaml" -- show-batch "$d/nosuch.yaml"
expect 1 "no validation set" -- show-batch "$d/p.yaml" --valid --set data.valid.split=0
[ "$(wc -l <"$err")" -eq 1 ] || fail "the error is not one line"

[ "$failures" -eq 0 ] && echo "show_batch: all checks passed"
[ "$failures" -eq 0 ]
