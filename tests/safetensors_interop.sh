#!/bin/sh
# Checkpoints against the reference safetensors implementation: Python reads
# what plugnet writes, and plugnet reads what Python writes. Skipped (77)
# where numpy or safetensors is not installed.
set -u
top=${PN_TOP_BUILDDIR:-.}
src=${PN_TOP_SRCDIR:-.}
python3 -c "import safetensors, numpy" 2>/dev/null || { echo "SKIP: no python3 safetensors/numpy"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
helper="$top/tests/st_interop"
script="$src/tests/safetensors_interop.py"
failures=0

"$helper" write "$dir/from_c.safetensors" || { echo "FAIL: st_interop write"; failures=$((failures + 1)); }
python3 "$script" check "$dir/from_c.safetensors" || { echo "FAIL: python could not read plugnet's file"; failures=$((failures + 1)); }
python3 "$script" write "$dir/from_py.safetensors" || { echo "FAIL: python write"; failures=$((failures + 1)); }
"$helper" check "$dir/from_py.safetensors" || { echo "FAIL: plugnet could not read python's file"; failures=$((failures + 1)); }
[ "$failures" -eq 0 ] && echo "PASS: safetensors interop both ways"
exit "$failures"
