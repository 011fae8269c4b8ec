#!/usr/bin/env bash
# The hand-over through the rdmig tool (issue #12): what an operator sees.
#  1. a failed migration does not end `rdmig listen`: it logs it, discards
#     (no dump, a "discarded" JSON event) and the next source completes
#     against the same listener, dumps equal, incr check passing;
#     a listener that dropped VERIFIED answers the aborted source's RESOLVE
#     while it waits for the next source;
#  2. GO_ACK lost (the listener drops its connection instead of sending
#     it): settled over a new connection, both exit 0;
#  3. the destination killed on GO: the source exits 3, guest paused, and
#     says what to do; the JSON summary has status "unknown" and the advice;
#  4. the source killed after VERIFIED: the listener exits 3 and says that
#     it never started the guest;
#  5. bad --commit-timeout / --commit-grace: exit 2, named.
# usage: handover_cli.sh RDMIG IMAGE_CHECK BACKEND HOST [slow]
# "slow": a smaller guest and longer deadlines, for the VM's emulated CPU.
# Faults come from the hidden --test-fault STEP:ACTION (engine test hooks).
set -u
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/lib.sh"
R=$1 CHK=$2 BACKEND=$3 HOST=$4
GUEST=16M
DEADLINES=(--commit-timeout 2s --commit-grace 3s)
if [ "${5:-}" = slow ]; then
	GUEST=8M
	DEADLINES=(--commit-timeout 4s --commit-grace 6s)
fi
tmp=$(mktemp -d)
dst="" port=""
trap '[ -n "$dst" ] && kill -9 "$dst" 2>/dev/null; rm -rf "$tmp"' EXIT

start_dest() { # start_dest [listen options]: $dst, $port
	rm -f "$tmp/dst.bin"
	start_listener "$tmp/dst.json" --json --dump-ram "$tmp/dst.bin" "${DEADLINES[@]}" "$@"
}

# wait_dst SECONDS: the listener's exit status, 255 if it had to be killed.
wait_dst() {
	local rc
	wait_pid "$dst" "$1"
	rc=$?
	dst=""
	return $rc
}

migrate() { # migrate [options]: exit status in $rc, stdout+stderr in $OUT
	rm -f "$tmp/src.bin"
	OUT=$(timeout 120 "$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size $GUEST \
		--vcpus 1 --workload incr --min-rounds 2 --channels 2 --dump-ram "$tmp/src.bin" \
		"${DEADLINES[@]}" "$@" 2>&1)
	rc=$?
}

json_status() { # json_status FILE: status of its summary line
	grep '"event":"summary"' "$1" | sed -nE 's/.*"status":"([a-z]+)".*/\1/p'
}

dumps_ok() { # WHAT
	cmp -s "$tmp/src.bin" "$tmp/dst.bin" && pass "$1: source dump == destination dump" \
		|| fail "$1: dumps differ or missing"
	local out
	out=$("$CHK" "$tmp/dst.bin" 1 2>&1) && pass "$1: destination edge check: $out" \
		|| fail "$1: edge check: $out"
}

# 1. A failed migration, then a good one, on one listener.
if start_dest; then
	migrate --test-fault manifest:drop
	[ $rc -eq 1 ] && pass "failed migration: source exit 1" || fail "failed migration: source exit $rc: $OUT"
	expect_out "still running here" "failed migration: source says its guest runs"
	for _ in $(seq 200); do
		grep -q "nothing kept, waiting for the next source" "$tmp/dst.err" && break
		sleep 0.05
	done
	grep -q "nothing kept, waiting for the next source" "$tmp/dst.err" \
		&& pass "listener logged it: $(grep -m1 'nothing kept' "$tmp/dst.err")" \
		|| fail "listener did not log the failed migration: $(tail -3 "$tmp/dst.err")"
	grep -qE "(accepted (a )?)?connection from $HOST" "$tmp/dst.err" \
		&& pass "listener logged the source's address: $(grep -m1 -E '(accepted (a )?)?connection from' "$tmp/dst.err")" \
		|| fail "no accepted-connection line with $HOST: $(head -5 "$tmp/dst.err")"
	grep -q '"event":"discarded"' "$tmp/dst.json" && pass "listener printed a discarded event" \
		|| fail "no discarded event: $(cat "$tmp/dst.json")"
	[ ! -e "$tmp/dst.bin" ] && pass "nothing kept: no destination dump" || fail "a dump from the failed migration"
	kill -0 "$dst" 2>/dev/null && pass "listener still serving" || fail "listener exited after a failed migration"
	migrate
	[ $rc -eq 0 ] && pass "second source: completed on the same listener" || fail "second source: exit $rc: $OUT"
	wait_dst 60
	rd=$?
	[ $rd -eq 0 ] && pass "listener exit 0 after the completed migration" || fail "listener exit $rd: $(tail -3 "$tmp/dst.err")"
	[ "$(json_status "$tmp/dst.json")" = completed ] && pass "listener summary: completed" \
		|| fail "listener summary: $(tail -1 "$tmp/dst.json")"
	dumps_ok "second source"
fi

# 1b. The listener drops its connection instead of VERIFIED: it discards and
# listens on; the source, which cannot know, resumes and tells it over a new
# connection (RESOLVE ABORTED), which the listener answers at once.
if start_dest --test-fault verified:drop; then
	t0=$(date +%s)
	migrate
	took=$(($(date +%s) - t0))
	[ $rc -eq 1 ] && pass "VERIFIED dropped: source exit 1" || fail "VERIFIED dropped: source exit $rc: $OUT"
	expect_out "still running here" "VERIFIED dropped: source says its guest runs"
	for _ in $(seq 100); do
		grep -q "it does not (nothing to do)" "$tmp/dst.err" && break
		sleep 0.05
	done
	grep -q "it does not (nothing to do)" "$tmp/dst.err" \
		&& pass "the listener answered the source's RESOLVE: $(grep -m1 'nothing to do' "$tmp/dst.err")" \
		|| fail "no answered RESOLVE in the listener's log: $(tail -3 "$tmp/dst.err")"
	kill -0 "$dst" 2>/dev/null && pass "listener still serving" || fail "listener exited"
	echo "info: the source returned after ${took} s"
	kill -TERM "$dst"
	wait_dst 30
	rd=$?
	[ $rd -eq 1 ] && pass "listener stopped by SIGTERM (exit 1)" || fail "listener exit $rd on SIGTERM"
fi

# 2. GO_ACK lost: RESOLVE over a new connection settles it.
if start_dest --test-fault go-ack:drop; then
	migrate
	[ $rc -eq 0 ] && pass "GO_ACK lost: source exit 0 after RESOLVE" || fail "GO_ACK lost: source exit $rc: $OUT"
	expect_out "settling" "GO_ACK lost: source says it settles"
	wait_dst 60
	rd=$?
	[ $rd -eq 0 ] && pass "GO_ACK lost: listener exit 0" || fail "GO_ACK lost: listener exit $rd: $(tail -3 "$tmp/dst.err")"
	dumps_ok "GO_ACK lost"
fi

# 3. The destination dies on GO: the source cannot know, exits 3, paused.
if start_dest --test-fault go:kill; then
	migrate
	[ $rc -eq 3 ] && pass "destination killed on GO: source exit 3" || fail "destination killed on GO: source exit $rc: $OUT"
	expect_out "outcome unknown for migration" "source names the unknown outcome"
	expect_out "do not resume it until you know the destination does not run it" "source says what not to do"
	expect_out "Check the destination's log" "source says how to check"
	case "$OUT" in *"still running here"*) fail "an unknown source says its guest runs" ;; *) pass "source does not claim its guest runs" ;; esac
	wait_dst 30
	rd=$?
	[ $rd -eq 137 ] && pass "destination was killed (137)" || fail "destination exit $rd"
fi
if start_dest --test-fault go:kill; then
	migrate --json
	[ $rc -eq 3 ] && pass "--json: source exit 3" || fail "--json: source exit $rc"
	echo "$OUT" | grep '"event":"summary"' >"$tmp/src.json"
	[ "$(json_status "$tmp/src.json")" = unknown ] && pass "--json: status unknown" \
		|| fail "--json: summary: $(cat "$tmp/src.json")"
	grep -q '"advice":"This source handed the guest over' "$tmp/src.json" && pass "--json: advice in the summary" \
		|| fail "--json: no advice: $(cat "$tmp/src.json")"
	grep -qE '"migration_id":"[0-9a-f]{32}"' "$tmp/src.json" && pass "--json: migration_id" \
		|| fail "--json: no migration_id: $(cat "$tmp/src.json")"
	wait_dst 30
fi

# 4. The source dies after VERIFIED: the listener exits 3, guest never started.
if start_dest; then
	migrate --test-fault verified:kill
	[ $rc -eq 137 ] && pass "source killed after VERIFIED (137)" || fail "source exit $rc: $OUT"
	wait_dst 60
	rd=$?
	[ $rd -eq 3 ] && pass "listener exit 3 (unknown)" || fail "listener exit $rd: $(tail -3 "$tmp/dst.err")"
	grep -q '"error":"outcome unknown for migration' "$tmp/dst.json" \
		&& pass "listener names the unknown outcome in its summary" \
		|| fail "listener summary: $(tail -1 "$tmp/dst.json")"
	grep -q "The guest was not started here, never will be" "$tmp/dst.err" \
		&& pass "listener says it never started the guest" || fail "listener advice missing: $(tail -2 "$tmp/dst.err")"
	[ "$(json_status "$tmp/dst.json")" = unknown ] && pass "listener summary: unknown" \
		|| fail "listener summary: $(tail -1 "$tmp/dst.json")"
	[ ! -e "$tmp/dst.bin" ] && pass "no destination dump" || fail "an unknown destination left a dump"
fi

# 5. Bad deadlines.
expect_exit 2 "--commit-timeout 0" -- "$R" migrate 127.0.0.1:1 --guest-size 1M --commit-timeout 0
expect_out "--commit-timeout expects a duration between 1s and 3600s" "names the range"
expect_exit 2 "--commit-grace 2h" -- "$R" listen 127.0.0.1:0 --commit-grace 2h
expect_out "--commit-grace expects a duration between 1s and 3600s" "names the range"
expect_exit 2 "--commit-timeout soon" -- "$R" listen 127.0.0.1:0 --commit-timeout soon
expect_exit 2 "--test-fault bogus" -- "$R" migrate 127.0.0.1:1 --guest-size 1M --test-fault go:explode
expect_out "STEP:ACTION" "names the form"
finish
