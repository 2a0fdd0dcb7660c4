#!/usr/bin/env bash
# The README's second command (and CI's): install what is missing, build and
# run the whole test suite normally, then under AddressSanitizer and
# UndefinedBehaviorSanitizer, then `make distcheck`. Ends with one line
# "N passed, M failed, K skipped".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh" || exit 1
# Python peers for the interoperability tests, which skip without them.
python3 -c 'import numpy, safetensors' 2>/dev/null ||
  python3 -m pip install -q numpy safetensors >/dev/null 2>&1 ||
  echo "note: numpy/safetensors unavailable; the safetensors interop test will skip"
jobs=$(nproc)
pass=0 fail=0 skip=0
status=0

count() { # adds up an automake test-suite.log summary
  local log=$1
  [ -f "$log" ] || { fail=$((fail + 1)); return; }
  local p f e x s
  p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
  e=$(sed -n 's/^# ERROR: *//p' "$log"); x=$(sed -n 's/^# XPASS: *//p' "$log")
  s=$(sed -n 's/^# SKIP: *//p' "$log")
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0} + ${e:-0} + ${x:-0})); skip=$((skip + ${s:-0}))
}

run_suite() { # name, build dir, configure args...
  local name=$1 dir=$2
  shift 2
  echo "== $name"
  rm -rf "$dir"
  if ! "$top/scripts/build.sh" "$dir" "$@"; then
    echo "$name: build failed"; fail=$((fail + 1)); status=1; return
  fi
  if ! make -C "$dir" -s -j"$jobs" check >"$dir/check.out" 2>&1; then status=1; fi
  grep -E '^(PASS|FAIL|SKIP|ERROR|XFAIL|XPASS):' "$dir/check.out" || true
  for log in "$dir"/tests/*.log; do
    case "$log" in *test-suite.log) ;; *)
      grep -q '^:test-result: \(FAIL\|ERROR\)' "${log%.log}.trs" 2>/dev/null && { echo "---- $log"; tail -40 "$log"; } ;;
    esac
  done
  count "$dir/test-suite.log"
}

(cd "$top" && ./bootstrap >/dev/null 2>&1) || { echo "bootstrap failed"; echo "0 passed, 1 failed"; exit 1; }
run_suite "build and test" "$top/build-check"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite "AddressSanitizer + UndefinedBehaviorSanitizer" "$top/build-asan" \
  CFLAGS="-O1 -g $san" LDFLAGS="$san"
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== make distcheck"
dc="$top/build-distcheck"
rm -rf "$dc" && mkdir -p "$dc"
if (cd "$dc" && "$top/configure" -q && make -s -j"$jobs" distcheck >distcheck.out 2>&1); then
  pass=$((pass + 1)); echo "PASS: make distcheck"
else
  fail=$((fail + 1)); status=1; echo "FAIL: make distcheck"; tail -60 "$dc/distcheck.out"
fi

echo "$pass passed, $fail failed, $skip skipped"
exit $status
