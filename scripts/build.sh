#!/bin/sh
# Builds plugnet in build/ (or $1) from a fresh clone or an existing tree.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$top/build"}
if [ $# -gt 0 ]; then shift; fi
[ -x "$top/configure" ] || (cd "$top" && ./bootstrap >/dev/null 2>&1)
mkdir -p "$dir"
cd "$dir"
[ -f Makefile ] || "$top/configure" -q "$@"
make -s -j"$(nproc)" >/dev/null
