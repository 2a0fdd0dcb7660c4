#!/bin/sh
# One training epoch of the Fashion-MNIST CNN (share/pipelines/fashion-mnist-
# cnn.yaml): plugnet's cpu backend beside PyTorch, same threads, same run.
# plugnet's figure is the epoch's time from its table (training only, like
# the peer's). Run by hand: `make bench-cnn`. env: THREADS=2, PYTHON=python3.
set -eu
plugnet=${1:-core/cli/plugnet}
threads=${THREADS:-2}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
cpus="0-$((threads - 1))"
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads PLUGNET_THREADS=$threads BENCH_THREADS=$threads
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); threads $threads"
out=$(taskset -c "$cpus" "$plugnet" train "$here/../../share/pipelines/fashion-mnist-cnn.yaml" \
  --set train.epochs=1 --set train.progress=off --set "schedule={type: constant}" 2>&1)
ours=$(echo "$out" | awk '$1 == "0" { split($NF, t, ":"); print t[1] * 60 + t[2] }')
acc=$(echo "$out" | sed -n 's/^test: .*accuracy \([0-9.]*\).*/\1/p')
peer=$(taskset -c "$cpus" "$python" "$here/cnn_torch.py")
theirs=$(echo "$peer" | sed 's/torch epoch \([0-9.]*\) s.*/\1/')
echo "plugnet epoch ${ours} s (test accuracy $acc after 1 epoch)"
echo "$peer"
echo "ratio: $(echo "$theirs / $ours" | bc -l | cut -c1-4)x"
