#!/bin/sh
# The cuda backend where there is no GPU, as CI sees it: the plugin builds
# and loads, `plugnet backends` lists cuda:0 as unavailable with the reason,
# `plugnet train --backend cuda` stops with that reason in one line and a
# non-zero status (never a crash), and the cpu backend still trains. Run
# against the system's driver (absent here), a missing file, the fake driver
# (tests/fakecuda) in its no-device and device modes, and the toolkit's stub
# libcuda.so when one is installed. `plugnet topology` and the device's
# description show the cores nearest each GPU.
set -u
. "${PN_TOP_SRCDIR:-.}/tests/cli_expect.sh"
t="$top/tests/test_cuda_nodevice"
fake="$top/tests/fakecuda/.libs/fakecuda.so"
missing="$top/tests/fakecuda/no-such-libcuda.so"
[ -f "$fake" ] || { echo "FAIL: $fake was not built"; exit 1; }
d=$(mktemp -d "${TMPDIR:-/tmp}/pn-cuda.XXXXXX") || exit 1
trap 'rm -rf "$d" "$out" "$err"' EXIT
# cuBLAS would pull in the CUDA runtime, which looks for the real driver.
export PLUGNET_LIBCUBLAS="$missing"

# ---- the C tests, one process per driver (the plugin opens it once)
run_case() {
  name=$1
  shift
  env "$@" "$t" "$name" >"$out" 2>"$err"
  st=$?
  if [ "$st" -eq 77 ] && [ "$name" = default ]; then
    echo "skip: default case (libcuda.so.1 is installed)"
    return 1
  fi
  [ "$st" -eq 0 ] || fail "test_cuda_nodevice $name exited $st"
  return 0
}
run_case default -u PLUGNET_LIBCUDA && system_has_no_driver=1 || system_has_no_driver=0
run_case missing PLUGNET_LIBCUDA="$missing"
run_case nodevice PLUGNET_LIBCUDA="$fake" FAKECUDA_MODE=nodevice
run_case zero PLUGNET_LIBCUDA="$fake" FAKECUDA_DEVICES=0
run_case device PLUGNET_LIBCUDA="$fake" FAKECUDA_DEVICES=2
env PLUGNET_LIBCUDA="$fake" FAKECUDA_EMULATE=1 "$t" emulate >"$out" 2>"$err"
st=$?
[ "$st" -eq 0 ] || [ "$st" -eq 77 ] || fail "test_cuda_nodevice emulate exited $st"
# On a machine with a GPU, the same comparisons run on it (skipped here).
env -u PLUGNET_LIBCUDA -u PLUGNET_LIBCUBLAS "$t" gpu >"$out" 2>"$err"
st=$?
[ "$st" -eq 0 ] || [ "$st" -eq 77 ] || fail "test_cuda_nodevice gpu exited $st"
# The embedded PTX must assemble for the GPUs of today (the driver does this
# when it loads the module; ptxas comes with nvcc).
ptx="$top/plugins/backends/cuda/kernels.ptx"
if [ -f "$ptx" ] && command -v ptxas >/dev/null 2>&1; then
  for sm in sm_80 sm_90; do
    ptxas -arch=$sm "$ptx" -o /dev/null >"$out" 2>"$err" || fail "ptxas -arch=$sm rejects kernels.ptx"
  done
fi

# ---- plugnet backends
if [ "$system_has_no_driver" -eq 1 ]; then
  unset PLUGNET_LIBCUDA
  expect 0 "cuda:0 *cuda *unavailable: no CUDA device: libcuda.so.1 not found (the NVIDIA driver is not installed)" -- backends
  expect 0 "cpu *cpu *available" -- backends
fi
export PLUGNET_LIBCUDA="$missing"
expect 0 "cuda:0 *cuda *unavailable: no CUDA device: .*no-such-libcuda.so not found (PLUGNET_LIBCUDA)" -- backends
expect 0 "cuda *backend" -- plugins
export PLUGNET_LIBCUDA="$fake" FAKECUDA_MODE=nodevice
expect 0 "cuda:0 *cuda *unavailable: no CUDA device: cuInit failed: CUDA_ERROR_NO_DEVICE" -- backends
unset FAKECUDA_MODE
export FAKECUDA_DEVICES=2
expect 0 "cuda:1 *cuda .*Fake CUDA Device 1" -- backends
if grep -q "PTX compute_" "$out"; then
  expect 0 "cuda:0 *cuda *available *Fake CUDA Device 0, sm_80, 4 SMs" -- backends
else
  expect 0 "cuda:0 *cuda *unavailable: built without CUDA kernels (configure found no nvcc)" -- backends
fi
unset FAKECUDA_DEVICES

# ---- the cores nearest a GPU, on a two-socket machine described to hwloc
# (HWLOC_XMLFILE) with an NVIDIA GPU (PCI 0000:65:00.0) on the second socket.
# The file has no XML comments: without libxml2, hwloc's own minimal parser
# reads it and rejects comments.
unset PLUGNET_LIBCUDA
expect 0 "^GPU\|^GPUs: no CUDA device" -- topology
xml="$src/tests/fakecuda/gpu-topology.xml"
export HWLOC_XMLFILE="$xml"
expect 0 "^GPU 0000:65:00.0 (NVIDIA): nearest PUs 2-3" -- topology
export PLUGNET_LIBCUDA="$fake" FAKECUDA_BUSID=0000:65:00.0
expect 0 "cuda:0 *cuda .*PCI 0000:65:00.0 (near PUs 2-3)" -- backends
unset HWLOC_XMLFILE FAKECUDA_BUSID

# ---- plugnet train --backend cuda fails cleanly; --backend cpu trains
"$top/tests/test_train" --make-data "$d" || fail "making the synthetic data set"
train_fails() { # why-pattern, then env assignments
  pattern=$1
  shift
  env "$@" "$cli" train "$d/p.yaml" --backend cuda >"$out" 2>"$err"
  st=$?
  [ "$st" -ne 0 ] && [ "$st" -lt 128 ] || { fail "train --backend cuda ($*) exited $st"; return; }
  [ "$(wc -l <"$err")" -eq 1 ] || fail "train --backend cuda ($*): the error is not one line"
  grep -q -- "$pattern" "$err" || fail "train --backend cuda ($*): no '$pattern'"
}
if [ "$system_has_no_driver" -eq 1 ]; then
  train_fails "backend 'cuda' is unavailable: no CUDA device: libcuda.so.1 not found" -u PLUGNET_LIBCUDA
fi
train_fails "backend 'cuda' is unavailable: no CUDA device: .*not found" PLUGNET_LIBCUDA="$missing"
train_fails "unavailable: no CUDA device: cuInit failed: CUDA_ERROR_NO_DEVICE" \
  PLUGNET_LIBCUDA="$fake" FAKECUDA_MODE=nodevice
# The fake device runs no kernel: the run stops at the first one, or (while
# the core falls back only to backends already loaded, and --backend cuda
# loads no other) at the first op the cuda backend lacks; built without
# nvcc, the probe stops it.
train_fails "cuLaunchKernel\|no loaded backend implements op\|built without CUDA kernels" \
  PLUGNET_LIBCUDA="$fake"
expect 0 "^test: loss .*accuracy" -- train "$d/p.yaml" --backend cpu

# ---- the toolkit's stub driver: every symbol resolves, cuInit refuses
stub=""
for s in /usr/local/cuda/lib64/stubs/libcuda.so /usr/local/cuda/lib/stubs/libcuda.so; do
  [ -f "$s" ] && stub=$s && break
done
if [ -n "$stub" ]; then
  export PLUGNET_LIBCUDA="$stub"
  expect 0 "cuda:0 *cuda *unavailable: no CUDA device: cuInit failed: CUDA_ERROR_STUB_LIBRARY" -- backends
else
  echo "skip: no stub libcuda.so from a CUDA toolkit"
fi

[ "$failures" -eq 0 ] && echo "cuda_nodevice: all checks passed"
[ "$failures" -eq 0 ]
