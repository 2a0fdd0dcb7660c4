#!/bin/sh
# resnet18 and mobilenet_v2 on the cpu backend beside torchvision's models in
# PyTorch, same threads, same run: a training step at batch 16 and an
# inference at batch 1, 3x224x224. Run by hand (`make bench-models`), never
# by make check. env: THREADS=2, REPS=5, MODELS="resnet18 mobilenet_v2",
# PYTHON=python3 (needs torch and torchvision).
set -eu
bin=${1:-bench/models/bench_models}
threads=${THREADS:-2}
reps=${REPS:-5}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
cpus="0-$((threads - 1))"
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads PLUGNET_THREADS=$threads
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); threads $threads; reps $reps (best of)"
for model in ${MODELS:-resnet18 mobilenet_v2}; do
  for job in "train 16" "infer 1"; do
    set -- $job
    ours=$(taskset -c "$cpus" "$bin" "$model" "$1" "$2" 224 "$reps")
    peer=$(taskset -c "$cpus" "$python" "$here/peer_torch.py" "$model" "$1" "$2" 224 "$reps" "$threads")
    a=$(echo "$ours" | sed 's/.*best \([0-9.]*\) s.*/\1/')
    b=$(echo "$peer" | sed 's/.*best \([0-9.]*\) s.*/\1/')
    printf '%-13s %-5s batch %-3s plugnet %8.4f s  pytorch %8.4f s  ratio %.2fx\n' \
      "$model" "$1" "$2" "$a" "$b" "$(echo "$b / $a" | bc -l)"
  done
done
