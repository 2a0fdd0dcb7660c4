#!/bin/sh
# The Fashion-MNIST MLP, `plugnet train` (cpu backend) beside PyTorch and
# NumPy, measured in the same run on the same threads. Run by hand, never by
# make check:
#
#   bench/mlp/run.sh [PLUGNET]      (default: core/cli/plugnet under the
#                                    current directory, else plugnet on PATH)
#   env: RUNS=3 (rounds; medians are reported), THREADS=2, CPUS=0-1 (taskset
#        list every process is confined to), PYTHON=python3, TORCH_PYTHON
#        (the interpreter for the PyTorch peer, default $PYTHON; e.g.
#        /usr/bin/python3 with Debian's python3-torch 1.13, the version the
#        issue's figures were taken with), KEEP=dir (keep every output there)
#
# One job for all three, the default pipeline's (share/pipelines/
# fashion-mnist-mlp.yaml) with a constant rate:
#   784 -> linear 128 -> ReLU -> linear 10, He-normal (kaiming_normal, fan_in,
#   gain sqrt 2) weights and zero biases; mean softmax cross-entropy; Adam
#   lr 2e-3 (betas 0.9/0.999, eps 1e-8) held CONSTANT for every step
#   (plugnet: --set schedule.type=constant; the pipeline's cosine annealing
#   is off, so the peers need no schedule); batches of 128 from a fresh
#   permutation of all 60,000 training images every epoch (469 steps, the
#   last of 96); 5 epochs; inputs (pixel/255 - 0.2860)/0.3530; the 10,000
#   test images evaluated (loss and accuracy, batches of 128) after every
#   epoch, as the pipeline's data.valid: test does, and once more at the end.
#   Seeds are fixed (1) but the three draw different random numbers, so
#   their accuracies agree to about a point, not exactly.
#
# What is timed, the same span for all three ("span" below):
#   from before the gzip'd IDX files are read to after the final test
#   evaluation: decompressing and standardising the data, building the model
#   and optimizer, the 5 epochs with their evaluations, the final one.
#   plugnet's own "time:" is exactly this (pn_train's clock starts before
#   the dataset is opened); the Python peers take perf_counter() around the
#   same steps, after their imports. Not in the span: process start, Python
#   imports (about 1-2 s for torch), plugnet's plugin discovery and YAML
#   parsing (a few ms). The whole process's wall time ("wall") is printed too.
# Peak RSS is /usr/bin/time's "Maximum resident set size" of each process
# (for the peers that includes the interpreter and its libraries, and the
# data held as float32: 219 MB for the two sets; plugnet keeps uint8).
#
# Threads: every process runs under `taskset -c $CPUS` with OMP/OPENBLAS/
# MKL_NUM_THREADS=$THREADS; plugnet gets PLUGNET_THREADS=$THREADS (its
# process-wide pool; `--set threads=N` would give the cpu backend a second
# pool beside the global one the Adam kernel uses), PyTorch
# torch.set_num_threads($THREADS). The rounds interleave the three programs
# so that a noisy neighbour hurts all of them alike; on a shared machine,
# look at the load average printed first and trust the medians.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
threads=${THREADS:-2}
cpus=${CPUS:-0-$((threads - 1))}
python=${PYTHON:-python3}
torch_python=${TORCH_PYTHON:-$python}
plugnet=${1:-}
if [ -z "$plugnet" ]; then
  if [ -x core/cli/plugnet ]; then plugnet=core/cli/plugnet; else plugnet=$(command -v plugnet || true); fi
fi
if [ -z "$plugnet" ] || [ ! -x "$plugnet" ]; then
  echo "run.sh: no plugnet binary (pass its path)" >&2
  exit 2
fi
[ -x /usr/bin/time ] || { echo "run.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
"$torch_python" -c 'import torch, numpy' 2>/dev/null || { echo "run.sh: $torch_python lacks torch or numpy" >&2; exit 2; }
"$python" -c 'import numpy' 2>/dev/null || { echo "run.sh: $python lacks numpy" >&2; exit 2; }
echo "peers: torch $("$torch_python" -c 'import torch; print(torch.__version__)') ($torch_python), numpy $("$python" -c 'import numpy; print(numpy.__version__)') ($python)"

out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$out"' EXIT

export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
export BENCH_THREADS="$threads" PLUGNET_THREADS="$threads" PYTHONDONTWRITEBYTECODE=1

# The pipeline's values restated where they define the job; none has a space.
plugnet_sets="--set schedule.type=constant --set optimizer.lr=2.0e-3 --set data.batch=128"
plugnet_sets="$plugnet_sets --set train.epochs=5 --set data.valid=test --set train.progress=off"

one() { # name round command...
  name=$1 round=$2
  shift 2
  taskset -c "$cpus" /usr/bin/time -v -o "$out/$name.$round.time" "$@" \
    >"$out/$name.$round.out" 2>"$out/$name.$round.err" || {
    echo "run.sh: $name failed (round $round):" >&2
    tail -5 "$out/$name.$round.err" >&2
    exit 1
  }
}

echo "plugnet: $plugnet train $plugnet_sets (default pipeline, PLUGNET_THREADS=$threads)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) online;" \
  "taskset -c $cpus, $threads threads; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$runs" ]; do
  # shellcheck disable=SC2086
  one plugnet "$r" "$plugnet" train $plugnet_sets
  one torch "$r" "$torch_python" "$here/mlp_torch.py"
  one numpy "$r" "$python" "$here/mlp_numpy.py"
  r=$((r + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$python" "$here/summarize.py" "$out" "$runs"
