#!/bin/sh
# The `plugnet` command as a user runs it: listings, inspection, and one-line
# errors with a non-zero exit for bad input.
set -u
. "${PN_TOP_SRCDIR:-.}/tests/cli_expect.sh"

expect 0 "cpu *backend" -- plugins
expect 0 "reference *backend" -- plugins
expect 0 "threads *int" -- inspect cpu
expect 0 "Loaded *no" -- inspect cpu   # inspecting opens no library
expect 1 "did you mean 'cpu'" -- inspect cpux
expect 0 "cpu *cpu *available" -- backends
expect 0 "reference *reference *available" -- backends
expect 0 "worker 0" -- topology
expect 2 "did you mean 'plugins'" -- plugin
expect 0 "plugin ABI 1.0" -- --version

# Errors are one line on stderr.
"$cli" inspect nosuchfeature >"$out" 2>"$err"
[ "$(wc -l <"$err")" -eq 1 ] || fail "error for an unknown feature is not one line"

# A broken manifest on the search path is reported with file:line:column.
PLUGNET_PLUGIN_PATH="$top/tests/fixtures/bad_yaml" "$cli" plugins >"$out" 2>"$err"
st=$?
[ "$st" -ne 0 ] || fail "plugins with a malformed manifest exited 0"
grep -q 'bad_yaml.yaml:[0-9]*:[0-9]*' "$err" || fail "malformed manifest: no file:line:column"
[ "$(wc -l <"$err")" -eq 1 ] || fail "malformed manifest error is not one line"

[ "$failures" -eq 0 ] && echo "cli: all checks passed"
[ "$failures" -eq 0 ]
