#!/bin/sh
# The README's first command: install what is missing, build, run the main job.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
"$top/scripts/build.sh"
cli="$top/build/core/cli/plugnet"
# Until the training pipeline lands, the main job shows what plugnet found.
"$cli" plugins
"$cli" backends
"$cli" topology
