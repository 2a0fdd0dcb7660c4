#!/bin/sh
# Image loading: one epoch of the TrashNet JPEGs decoded, random-resized-
# cropped to 224, flipped and normalised, by plugnet's loader and by
# torchvision's DataLoader, the same worker count on the same cores, in the
# same run. Target: plugnet >= 1.5x. Run by hand (`make bench-loading`),
# never by make check. env: WORKERS=2, BATCH=64, PYTHON=python3,
# DATA=<source tree>/../shared/data/trashnet (needs torch and torchvision).
set -eu
bin=${1:-bench/loading/bench_loading}
workers=${WORKERS:-2}
batch=${BATCH:-64}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
data=${DATA:-$here/../../../shared/data/trashnet}
if [ ! -d "$data" ]; then
  echo "bench-loading: no image folder at $data (set DATA)" >&2
  exit 1
fi
# One core a worker, as far as the machine has them; both sides' main
# threads share those cores with their workers.
ncpu=$(nproc)
cores=$((workers < ncpu ? workers : ncpu))
cpus="0-$((cores - 1))"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $workers workers on cpus $cpus; batch $batch"
ours=$(taskset -c "$cpus" "$bin" "$data" "$workers" "$batch")
peer=$(taskset -c "$cpus" "$python" "$here/peer_torch.py" "$data" "$workers" "$batch")
echo "$ours"
echo "$peer"
a=$(echo "$ours" | sed -n 's/.*, \([0-9.]*\) images\/s$/\1/p')
b=$(echo "$peer" | sed -n 's/.*, \([0-9.]*\) images\/s$/\1/p')
echo "ratio: $(echo "$a / $b" | bc -l | cut -c1-4)x (target >= 1.5x)"
