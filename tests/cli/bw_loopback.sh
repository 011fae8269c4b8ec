#!/usr/bin/env bash
# rdmig bw end to end between two processes: --verify compares every byte,
# --json is well-formed, perftest's flags (-q -s -D -p -a) mean what they
# mean in ib_write_bw, both ends meet on the default backend, a dead server
# is a clear error.
# usage: bw_loopback.sh RDMIG BACKEND HOST
set -u
. "$(dirname "$0")/lib.sh"
R=$1 BACKEND=$2 HOST=$3
tmp=$(mktemp -d)
srv=""
trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT

# Port 0: the server picks a free port and says which on stderr.
# start_server [--backend B]: default --backend $BACKEND.
start_server() {
	local be=(--backend "$BACKEND")
	[ $# -gt 0 ] && be=("$@")
	# The last server's words must not be read as this one's port.
	rm -f "$tmp/srv.err"
	"$R" bw --listen "$HOST:0" "${be[@]}" --once 2>"$tmp/srv.err" &
	srv=$!
	for _ in $(seq 100); do
		port=$(sed -nE 's/.*listening on .* port ([0-9]+).*/\1/p' "$tmp/srv.err" 2>/dev/null)
		[ -n "$port" ] && return 0
		sleep 0.1
	done
	fail "server did not start: $(cat "$tmp/srv.err")"
	return 1
}
# jq_ EXPR: a Python expression over the JSON line of $OUT (stderr is in $OUT too) as j.
jq_() { grep '^{' <<<"$OUT" | python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1"; }

start_server && {
	expect_exit 0 "bw --verify 2 channels" -- "$R" bw "$HOST:$port" --backend "$BACKEND" \
		--size 64K --channels 2 --duration 1 --verify
	expect_out "verify         ok" "destination matches byte for byte"
	expect_out "bandwidth" "report has bandwidth"
	expect_out "#iterations" "report has perftest's columns"
	wait $srv || fail "server exit status $?"
}
start_server && {
	expect_exit 0 "bw --json" -- "$R" bw "$HOST:$port" --backend "$BACKEND" --size 4k \
		--duration 1 --json
	for k in backend msg_bytes channels bytes total_ms avg_gbps peak_gbps avg_mib_s msg_rate iterations; do
		expect_out "\"$k\":" "json has $k"
	done
	[ "$(jq_ 'j["status"], j["error"], j["msg_bytes"]')" = "('completed', None, 4096)" ] \
		&& pass "json: status completed, error null, 4096-byte messages" || fail "json: $OUT"
	wait $srv || fail "server exit status $?"
}
# perftest's spelling: -q queue pairs, -s size, -D seconds, -p port.
start_server && {
	expect_exit 0 "bw -q 2 -s 8k -D 1 -p PORT" -- "$R" bw "$HOST" -p "$port" \
		--backend "$BACKEND" -q 2 -s 8k -D 1 --verify --json
	[ "$(jq_ 'j["channels"], j["msg_bytes"], j["verify"], j["iterations"] > 0')" = \
		"(2, 8192, 'ok', True)" ] && pass "-q 2 -s 8k: 2 channels, 8 KiB, verified" \
		|| fail "-q/-s not taken: $OUT"
	wait $srv || fail "server exit status $?"
}
# -a: powers of two, one connection each, one server run (--once) for all of them.
start_server && {
	expect_exit 0 "bw -a -D 50ms" -- "$R" bw "$HOST:$port" --backend "$BACKEND" -a -D 50ms --json
	sizes=$(jq_ '[r["msg_bytes"] for r in j["results"]]')
	python3 -c 'import sys; s=eval(sys.argv[1]); sys.exit(not (len(s) >= 12 and s[-1] == 8 << 20 and all(b == 2 * a for a, b in zip(s, s[1:]))))' "$sizes" \
		&& pass "-a swept powers of two up to 8 MiB: $sizes" || fail "-a sizes: $sizes"
	wait $srv && pass "one --once server served the whole sweep" || fail "server exit status $?"
}
# Both ends on their default backend meet: auto on both sides.
want=$("$R" doctor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backend"])')
if [ "$want" = "$BACKEND" ] && start_server --once; then
	expect_exit 0 "bw with no --backend on either side" -- "$R" bw "$HOST:$port" -D 1 --json
	[ "$(jq_ 'j["backend"]')" = "$BACKEND" ] && pass "default backend is auto: $BACKEND here" \
		|| fail "default backend: $OUT"
	wait $srv || fail "server exit status $?"
fi
# Nobody listens on the port the last server used any more.
expect_exit 1 "bw to a dead server" -- "$R" bw "$HOST:$port" --backend "$BACKEND" --duration 1
expect_out "rdmig bw:" "dead server gives a message"
expect_exit 1 "bw --json to a dead server" -- "$R" bw "$HOST:$port" --backend "$BACKEND" \
	--duration 1 --json
[ "$(jq_ 'j["status"], j["error"] is not None')" = "('failed', True)" ] \
	&& pass "json of a failure: status failed with the error" || fail "failure json: $OUT"
finish
