#!/bin/sh
# The README's first command: install what is missing, build, run the main job.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
"$top/scripts/build.sh"
# The main job: share/pipelines/fashion-mnist-mlp.yaml, the default pipeline.
exec "$top/build/core/cli/plugnet" train
