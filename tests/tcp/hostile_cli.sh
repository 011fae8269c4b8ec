#!/usr/bin/env bash
# The tool against hostile peers: `rdmig listen --key-file K --channels 2`
# meets, before its real source, a source with the wrong key, a source asking
# for 8 channels, and `xport_check hostile-client` (garbage, HELLOs then
# close, HELLOs then silence, an oversized frame, idle connections held
# open). It must still be serving: a keyed `rdmig migrate` then completes
# and the source's and destination's RAM dumps are equal (cmp).
# usage: hostile_cli.sh RDMIG XPORT_CHECK BACKEND HOST [small]
set -u
. "$(dirname "$0")/../cli/lib.sh"
R=$1 XC=$2 BACKEND=$3 HOST=$4
GUEST=32M
[ "${5:-}" = small ] && GUEST=8M
tmp=$(mktemp -d)
dst="" hc=""
trap 'kill $dst $hc 2>/dev/null; exec 9>&- 2>/dev/null; rm -rf "$tmp"' EXIT

head -c 32 /dev/urandom >"$tmp/key" && chmod 600 "$tmp/key"
head -c 32 /dev/urandom >"$tmp/wrong" && chmod 600 "$tmp/wrong"

: >"$tmp/dst.err"
"$R" listen "$HOST:0" --backend "$BACKEND" --key-file "$tmp/key" --channels 2 \
	--dump-ram "$tmp/dst.bin" >"$tmp/dst.out" 2>"$tmp/dst.err" &
dst=$!
port=""
for _ in $(seq 200); do
	port=$(sed -nE 's/.*waiting on .* port ([0-9]+).*/\1/p' "$tmp/dst.err")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { fail "destination did not start: $(cat "$tmp/dst.err")"; finish; }

migrate() { # migrate KEY [options]: a source of this test's guest
	local key=$1
	shift
	"$R" migrate "$HOST:$port" --backend "$BACKEND" --key-file "$key" --guest-size $GUEST \
		--vcpus 1 --workload incr "$@"
}

expect_exit 1 "a source with the wrong key is refused" -- migrate "$tmp/wrong" --channels 2
expect_out "rejected our proof" "the wrong-key source is told why"
expect_exit 1 "a source asking for 8 channels is refused" -- migrate "$tmp/key" --channels 8
expect_out "allows at most 2 data channels, this side asked for 8" \
	"the refusal names both channel counts"
expect_out "use --channels 2 or raise the destination's --channels" "and the two ways out"

# The hostile client holds its silent and idle connections until fd 9 closes.
mkfifo "$tmp/hold"
"$XC" hostile-client --backend "$BACKEND" --host "$HOST" --port "$port" <"$tmp/hold" \
	>"$tmp/hc.out" 2>&1 &
hc=$!
exec 9>"$tmp/hold"
for _ in $(seq 600); do
	grep -q "hostile-client: holding" "$tmp/hc.out" && break
	kill -0 $hc 2>/dev/null || break
	sleep 0.1
done
grep -q "hostile-client: holding" "$tmp/hc.out" && pass "hostile peers connected and holding" \
	|| fail "hostile client: $(cat "$tmp/hc.out")"
kill -0 $dst 2>/dev/null && pass "rdmig listen is still serving after the hostile peers" \
	|| fail "rdmig listen exited: $(cat "$tmp/dst.err")"

expect_exit 0 "a keyed source migrates with the hostile connections still open" -- \
	migrate "$tmp/key" --channels 2 --dump-ram "$tmp/src.bin"
exec 9>&-
wait $hc && pass "hostile client: every misbehaviour got the expected answer" \
	|| fail "hostile client: $(grep -E 'FAIL' "$tmp/hc.out")"
hc=""
wait $dst && pass "destination committed" || fail "destination: $(cat "$tmp/dst.err")"
dst=""
cmp "$tmp/src.bin" "$tmp/dst.bin" && pass "source switchover dump == destination dump" \
	|| fail "dumps differ"
n=$(grep -c "dropping connection from" "$tmp/dst.err")
[ "$n" -ge 5 ] && pass "the destination logged $n dropped connections, each with its address" \
	|| fail "only $n drops logged: $(cat "$tmp/dst.err")"
grep -q "dropping connection from .*authentication failed" "$tmp/dst.err" \
	&& pass "the wrong key is in the destination's log" || fail "no authentication failure logged"
finish
