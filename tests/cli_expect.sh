# Sourced by the shell tests that run `plugnet` as a user does: sets top,
# src, cli, and `expect STATUS PATTERN -- ARGS...`, which runs plugnet with
# ARGS and records a failure (in $failures) unless it exits with STATUS and
# PATTERN appears on stdout or stderr.
top=${PN_TOP_BUILDDIR:-.}
src=${PN_TOP_SRCDIR:-.}
cli="$top/core/cli/plugnet"
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
failures=0

fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; failures=$((failures + 1)); }

expect() {
  want=$1 pattern=$2
  shift 3
  "$cli" "$@" >"$out" 2>"$err"
  got=$?
  [ "$got" -eq "$want" ] || { fail "plugnet $* exited $got, wanted $want"; return; }
  cat "$out" "$err" | grep -q -- "$pattern" || fail "plugnet $*: no '$pattern' in output"
}
