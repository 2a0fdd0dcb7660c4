#!/bin/sh
# Model files against torchvision: resnet18 and mobilenet_v2 with random
# weights (tests/parity_torch.py makes the state_dict, input and reference
# results), run by plugnet (tests/parity_run) in evaluation and training
# mode; outputs, every gradient and the running statistics are compared.
# Skipped (77) where torch, torchvision or safetensors is not importable, and
# under sanitizers. PARITY_BACKEND picks plugnet's backend (default cpu).
set -u
top=${PN_TOP_BUILDDIR:-.}
src=${PN_TOP_SRCDIR:-.}
backend=${PARITY_BACKEND:-cpu}
python3 -c "import torch, torchvision, safetensors" 2>/dev/null ||
  { echo "SKIP: no python3 torch, torchvision and safetensors"; exit 77; }
lib=$(ls "$top"/core/.libs/libplugnet.so.[0-9]* 2>/dev/null | head -n 1)
[ -n "$lib" ] || { echo "FAIL: no libplugnet.so under $top/core/.libs"; exit 1; }
# Under sanitizers two full networks forward and backward take minutes, and
# the C tests check the same kernels there; the plain build compares with
# torch.
if readelf -d "$lib" 2>/dev/null | grep -q 'libasan\|libubsan'; then
  echo "SKIP: libplugnet is built with sanitizers; the plain build compares with torch"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
script="$src/tests/parity_torch.py"
failures=0
for model in resnet18 mobilenet_v2; do
  # num_classes matches parity_torch.py's; mobilenet_v2's dropout is off in
  # both, its draws being framework-specific.
  set -- num_classes=10
  [ "$model" = mobilenet_v2 ] && set -- "$@" dropout=0
  if ! python3 "$script" make "$model" "$dir"; then
    echo "FAIL: $model: torch reference"; failures=$((failures + 1)); continue
  fi
  if ! "$top/tests/parity_run" "$src/share/models/$model.yaml" "$dir/$model.state.safetensors" \
      "$dir/$model.io.safetensors" "$dir/$model.plugnet.safetensors" --backend "$backend" "$@"; then
    echo "FAIL: $model: parity_run"; failures=$((failures + 1)); continue
  fi
  python3 "$script" compare "$model" "$dir" || failures=$((failures + 1))
done
[ "$failures" -eq 0 ] && echo "PASS: resnet18 and mobilenet_v2 match torchvision ($backend)"
exit "$failures"
