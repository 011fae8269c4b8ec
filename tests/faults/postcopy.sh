#!/usr/bin/env bash
# Post-copy (issue #18) with the rdmig tool, two real processes:
#  1. incr guest switched after the bulk round: every page fetched once and
#     checked; the destination's RAM (dumped once its guest paused after the
#     run) passes the edge check; the JSON summary has the post-copy figures.
#  2. random guest (written everywhere), switched after round 2, verify full:
#     completes, and every fetched page matched the source's checksum.
#  3. the destination dies (kill -9) during post-copy: the source keeps the
#     whole guest paused, says so and how to resume it; SIGUSR1 resumes it
#     here, and its RAM passes the edge check after it ran on.
#  4. tcp only: the link breaks during post-copy (a relay resets every
#     connection): the source reconnects, both finish, RAM passes the check.
#  5. bad arguments: exit 2 with a message.
# usage: postcopy.sh RDMIG IMAGE_CHECK BACKEND HOST [small]
set -u
. "$(dirname "$0")/../cli/lib.sh"
R=$1 CHK=$2 BACKEND=$3 HOST=$4
RELAY="$(dirname "$0")/cut_relay.py"
tmp=$(mktemp -d)
dst="" relay=""
trap 'kill -9 $dst $relay 2>/dev/null; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"
if [ "${5:-}" = small ]; then GUEST=16M; else GUEST=64M; fi

json_field() { # json_field FILE FIELD: from the summary line
	grep '"event":"summary"' "$1" | sed -nE "s/.*\"$2\":(\"[^\"]*\"|[-0-9.e]+).*/\1/p" | tr -d '"'
}
# wait_state FILE STATE SECONDS: until a JSON state event says STATE.
wait_state() {
	for _ in $(seq $(($3 * 20))); do
		grep -q "\"state\":\"$2\"" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
pc_field() { # pc_field FILE FIELD: from the summary's postcopy object
	grep '"event":"summary"' "$1" | sed -nE "s/.*\"postcopy\":\{[^}]*\"$2\":([-0-9.e]+).*/\1/p"
}

# 1. incr, post-copy after the bulk round.
if start_listener "$tmp/d1.json" --json --dump-ram "$tmp/d1.bin"; then
	expect_exit 0 "incr post-copy" -- "$R" migrate "$HOST:$port" --backend "$BACKEND" \
		--guest-size $GUEST --vcpus 2 --workload incr --postcopy --json
	echo "$OUT" >"$tmp/s1.json"
	expect_out "post-copy: once the guest runs at the destination" "the warning says what is at stake"
	wait_pid $dst 60; rc=$?
	[ $rc -eq 0 ] && pass "destination completed" || fail "destination exit $rc: $(cat "$tmp/dst.err")"
	pages=$(pc_field "$tmp/s1.json" pages)
	[ "${pages:-0}" -gt 0 ] && pass "$pages pages came after the switch" || fail "no post-copy: $OUT"
	[ "$(pc_field "$tmp/d1.json" pages)" = "$pages" ] && pass "both sides count $pages pages" \
		|| fail "destination counts $(pc_field "$tmp/d1.json" pages) pages, source $pages"
	for k in demand_pages fetch_p50_us fetch_p99_us fetch_max_us recoveries; do
		[ -n "$(pc_field "$tmp/s1.json" $k)" ] || fail "summary lacks postcopy.$k"
	done
	bytes=$(pc_field "$tmp/s1.json" bytes)
	[ "${bytes:-0}" -eq $((pages * 4096)) ] && pass "each page fetched once ($bytes bytes)" \
		|| fail "fetched ${bytes:-?} bytes for $pages pages"
	OUT=$("$CHK" "$tmp/d1.bin" 2 2>&1) && pass "destination edge check: $OUT" || fail "edge check: $OUT"
fi

# 2. random writes anywhere, two rounds first, every page verified.
if start_listener "$tmp/d2.json" --json; then
	expect_exit 0 "random post-copy, verify full" -- "$R" migrate "$HOST:$port" \
		--backend "$BACKEND" --guest-size $GUEST --vcpus 2 --workload random --prefill 50 \
		--postcopy-after 2 --downtime-limit 1ms --throttle off --verify full --json
	echo "$OUT" >"$tmp/s2.json"
	wait_pid $dst 60 || fail "destination failed: $(cat "$tmp/dst.err")"
	[ "$(pc_field "$tmp/s2.json" pages)" -gt 0 ] 2>/dev/null && pass "random: $(pc_field "$tmp/s2.json" pages) pages after the switch" \
		|| fail "random: no post-copy: $OUT"
	grep -q "does not match the source's checksum" "$tmp/dst.err" && fail "a fetched page did not match: $(cat "$tmp/dst.err")"
	[ "$(json_field "$tmp/s2.json" rounds)" -ge 2 ] && pass "switched after round 2" || fail "rounds: $OUT"
fi

# 2b. post-copy from the start: no pre-copy round, every page crosses once.
if start_listener "$tmp/d0.json" --json --dump-ram "$tmp/d0.bin"; then
	expect_exit 0 "post-copy from the start" -- "$R" migrate "$HOST:$port" --backend "$BACKEND" \
		--guest-size $GUEST --vcpus 2 --workload incr --postcopy-after 0 --json
	echo "$OUT" >"$tmp/s0.json"
	wait_pid $dst 60 || fail "destination failed: $(cat "$tmp/dst.err")"
	ram=$(json_field "$tmp/s0.json" ram_bytes)
	[ "$(json_field "$tmp/s0.json" bytes)" = "$(pc_field "$tmp/s0.json" bytes)" ] &&
		[ "$(pc_field "$tmp/s0.json" bytes)" -le "${ram:-0}" ] &&
		pass "every byte sent after the switch, at most the guest once ($ram)" \
		|| fail "bytes $(json_field "$tmp/s0.json" bytes), post-copy $(pc_field "$tmp/s0.json" bytes), guest $ram"
	OUT=$("$CHK" "$tmp/d0.bin" 2 2>&1) && pass "destination edge check: $OUT" || fail "edge check: $OUT"
fi

# 3. the destination dies during post-copy.
if start_listener "$tmp/d3.json" --json --test-pc-pace 20000; then
	"$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size $GUEST --vcpus 1 \
		--workload incr --postcopy --postcopy-recover 2s --dump-ram "$tmp/s3.bin" --json \
		>"$tmp/s3.json" 2>"$tmp/s3.err" &
	src=$!
	if wait_state "$tmp/s3.json" postcopy 60; then
		kill -9 $dst; wait $dst 2>/dev/null
		pass "destination killed during post-copy"
		for _ in $(seq 200); do grep -q "kill -USR1" "$tmp/s3.err" && break; sleep 0.1; done
		grep -q "paused here with all of its RAM" "$tmp/s3.err" && pass "the source says it holds the whole guest" \
			|| fail "no word on the paused guest: $(cat "$tmp/s3.err")"
		grep -q "kill -USR1 $src" "$tmp/s3.err" && pass "the source says how to resume it" \
			|| fail "no resume hint: $(cat "$tmp/s3.err")"
		kill -USR1 $src
		wait_pid $src 30; rc=$?
		[ $rc -eq 1 ] && pass "resumed here: exit 1 (failed, the guest runs here)" || fail "source exit $rc: $(cat "$tmp/s3.err")"
		grep -q '"status":"postcopy-lost"' "$tmp/s3.json" && pass "summary status postcopy-lost" \
			|| fail "summary: $(grep summary "$tmp/s3.json")"
		OUT=$("$CHK" "$tmp/s3.bin" 1 2>&1) && pass "source RAM after resuming: $OUT" || fail "edge check: $OUT"
	else
		fail "the source never reached post-copy: $(cat "$tmp/s3.err")"
		kill -9 $src
	fi
fi

# 4. the link breaks during post-copy and comes back (tcp: a relay that resets).
if [ "$BACKEND" != tcp ]; then
	echo "info: link-break recovery runs on tcp (a resetting relay); rdma has no such relay here"
elif start_listener "$tmp/d4.json" --json --dump-ram "$tmp/d4.bin" --test-pc-pace 20000 \
	--postcopy-recover 30s; then
	python3 "$RELAY" $port "$tmp/relay.port" >"$tmp/relay.out" 2>&1 &
	relay=$!
	for _ in $(seq 100); do [ -s "$tmp/relay.port" ] && break; sleep 0.05; done
	rport=$(cat "$tmp/relay.port")
	"$R" migrate "$HOST:$rport" --backend tcp --guest-size $GUEST --vcpus 2 --workload incr \
		--postcopy --postcopy-recover 30s --json >"$tmp/s4.json" 2>"$tmp/s4.err" &
	src=$!
	if wait_state "$tmp/s4.json" postcopy 60; then
		sleep 0.3
		kill -USR1 $relay
		wait_pid $src 120; rc=$?
		[ $rc -eq 0 ] && pass "recovered post-copy completed" || fail "source exit $rc: $(cat "$tmp/s4.err")"
		wait_pid $dst 60 || fail "destination failed: $(cat "$tmp/dst.err")"
		grep -q "cut [1-9]" "$tmp/relay.out" && pass "the relay cut the link: $(cat "$tmp/relay.out")" \
			|| fail "nothing was cut: $(cat "$tmp/relay.out")"
		rec=$(pc_field "$tmp/s4.json" recoveries)
		[ "${rec:-0}" -ge 1 ] && pass "$rec recovery" || fail "no recovery counted: $(grep summary "$tmp/s4.json")"
		OUT=$("$CHK" "$tmp/d4.bin" 2 2>&1) && pass "destination edge check after recovery: $OUT" || fail "edge check: $OUT"
	else
		fail "the source never reached post-copy: $(cat "$tmp/s4.err")"
		kill -9 $src
	fi
	kill $relay 2>/dev/null
fi

# 5. bad arguments.
expect_exit 2 "--postcopy-after soon" -- "$R" migrate 127.0.0.1:1 --guest-size 1M --postcopy-after soon
expect_out "expected auto, a number of rounds" "names the accepted forms"
expect_exit 2 "--postcopy with --cold" -- "$R" migrate 127.0.0.1:1 --guest-size 1M --postcopy --cold
expect_out "drop one of them" "says what to drop"
expect_exit 2 "--postcopy-after auto with --throttle off" -- "$R" migrate 127.0.0.1:1 --guest-size 1M --postcopy-after auto --throttle off
expect_out "needs --throttle adaptive or step" "says what auto needs"
expect_exit 2 "--postcopy-recover forever" -- "$R" listen --postcopy-recover forever
expect_out "--postcopy-recover expects a duration" "names the option"
finish
