#!/bin/sh
# plugnet's transforms against torchvision.transforms.functional
# (tests/transforms_torch.py drives tests/transform_run). Skipped (77) where
# torch or torchvision is not importable.
set -u
top=${PN_TOP_BUILDDIR:-.}
src=${PN_TOP_SRCDIR:-.}
python3 -c "import torch, torchvision" 2>/dev/null ||
  { echo "SKIP: no python3 torch and torchvision"; exit 77; }
run="$top/tests/transform_run"
[ -x "$run" ] || { echo "FAIL: no $run"; exit 1; }
exec python3 "$src/tests/transforms_torch.py" "$run"
