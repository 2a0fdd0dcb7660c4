#!/bin/sh
# plugnet's pooling, batch-norm, concat and clamp against torch.nn.functional
# (tests/nn_torch.py, through libplugnet with ctypes). Skipped (77) where
# torch is not installed.
set -u
top=${PN_TOP_BUILDDIR:-.}
src=${PN_TOP_SRCDIR:-.}
python3 -c "import torch" 2>/dev/null || { echo "SKIP: no python3 torch"; exit 77; }
lib=$(ls "$top"/core/.libs/libplugnet.so.[0-9]* 2>/dev/null | head -n 1)
[ -n "$lib" ] || { echo "FAIL: no libplugnet.so under $top/core/.libs"; exit 1; }
# A sanitizer-built library cannot be loaded into an uninstrumented Python.
if readelf -d "$lib" 2>/dev/null | grep -q 'libasan\|libubsan'; then
  echo "SKIP: libplugnet is built with sanitizers; the plain build compares with torch"
  exit 77
fi
exec python3 "$src/tests/nn_torch.py" "$lib"
