#!/usr/bin/env bash
# Network and environment faults with the rdmig tool (issue #8), meant for
# the SoftRoCE VM (they change the host's links: never run them on a shared
# host):
#   linkdel   `rdma link del DEV` in the dirty rounds, then re-add it
#   linkdown  `ip link set NETDEV down` in the dirty rounds, then up
#   memlock   `ulimit -l 64` before `rdmig listen`: refused at setup
#   loss      tc netem loss on IF (lo for tcp): 2% completes intact,
#             80% fails within the bound
# usage: net_faults.sh RDMIG IMAGE_CHECK BACKEND HOST MODE
# Env: RDMIG_RXE_DEV (rxe0), RDMIG_RXE_NETDEV (eth0), FAULT_BOUND_S (60).
# Every wait is bounded; exit 77 (skip) with a SKIP line where the fault
# cannot be injected here.
set -u
. "$(dirname "$0")/../cli/lib.sh"
R=$1 CHK=$2 BACKEND=$3 HOST=$4 MODE=$5
DEV=${RDMIG_RXE_DEV:-rxe0} NETDEV=${RDMIG_RXE_NETDEV:-eth0} BOUND=${FAULT_BOUND_S:-60}
GUEST=16M
tmp=$(mktemp -d)
dst="" src=""
cleanup() {
	[ -n "$dst" ] && kill -9 "$dst" 2>/dev/null
	[ -n "$src" ] && kill -9 "$src" 2>/dev/null
	[ "$MODE" = loss ] && tc qdisc del dev "$LOSS_IF" root 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
LOSS_IF=lo
[ "$BACKEND" = rdma ] && LOSS_IF=$NETDEV

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }

# rdma res counts of user objects (kernel QPs have no pid); -1 without the tool.
res_count() { rdma res show "$1" 2>/dev/null | grep -c ' pid ' || true; }

start_dest() { # start_dest [listen options]: $dst, $port
	"$R" listen "$HOST:0" --backend "$BACKEND" "$@" >"$tmp/dst.out" 2>"$tmp/dst.err" &
	dst=$!
	port=""
	for _ in $(seq 300); do
		port=$(sed -nE 's/.*waiting on .* port ([0-9]+).*/\1/p' "$tmp/dst.err")
		[ -n "$port" ] && return 0
		kill -0 $dst 2>/dev/null || break
		sleep 0.1
	done
	fail "destination did not start: $(cat "$tmp/dst.err")"
	return 1
}

# wait_pid PID SECONDS: exit status, or 255 after SIGKILL on timeout.
wait_pid() {
	local end=$(($(date +%s) + $2))
	while kill -0 "$1" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$end" ]; then
			kill -9 "$1" 2>/dev/null
			wait "$1" 2>/dev/null
			return 255
		fi
		sleep 0.05
	done
	wait "$1"
}

# A retry to a fresh destination: dumps equal, incr check passes.
retry() {
	start_dest --dump-ram "$tmp/rd.bin" || return
	if timeout 300 "$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size $GUEST \
		--vcpus 1 --workload incr --min-rounds 3 --channels 2 --dump-ram "$tmp/rs.bin" \
		>"$tmp/retry.out" 2>&1; then
		wait_pid $dst 60 && pass "$1: retry completed" || fail "$1: retry destination failed: $(cat "$tmp/dst.err")"
		cmp -s "$tmp/rs.bin" "$tmp/rd.bin" && pass "$1: retry dumps equal" || fail "$1: retry dumps differ"
		OUT=$("$CHK" "$tmp/rd.bin" 1 2>&1) && pass "$1: retry incr check: $OUT" || fail "$1: retry incr check: $OUT"
	else
		fail "$1: retry failed: $(cat "$tmp/retry.out")"
		kill -9 $dst 2>/dev/null
	fi
	dst=""
}

# Start a migration that stays in the dirty rounds, wait until it is there.
start_dirty_migration() {
	start_dest || return 1
	"$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size $GUEST --vcpus 1 \
		--workload incr --min-rounds 100000 --max-bandwidth 8M --channels 2 "$@" \
		>"$tmp/src.out" 2>"$tmp/src.err" &
	src=$!
	for _ in $(seq 1200); do
		grep -q "rdmig source: dirty-rounds" "$tmp/src.err" && return 0
		kill -0 $src 2>/dev/null || break
		sleep 0.1
	done
	fail "migration never reached the dirty rounds: $(cat "$tmp/src.err")"
	return 1
}

# Both sides must fail within the bound, the source saying its guest runs.
expect_both_fail() { # WHAT T0
	local what=$1 t0=$2 rs rd
	wait_pid $src $BOUND; rs=$?
	ts=$(elapsed "$t0")
	wait_pid $dst $BOUND; rd=$?
	td=$(elapsed "$t0")
	src="" dst=""
	[ $rs -eq 1 ] && pass "$what: source failed (exit 1) after ${ts} s: $(tail -1 "$tmp/src.err")" \
		|| fail "$what: source exit $rs after ${ts} s (255: still running at the ${BOUND} s bound): $(tail -3 "$tmp/src.err")"
	[ $rd -eq 1 ] && pass "$what: destination discarded (exit 1) after ${td} s: $(tail -1 "$tmp/dst.err")" \
		|| fail "$what: destination exit $rd after ${td} s: $(tail -3 "$tmp/dst.err")"
	grep -q "the guest is still running here" "$tmp/src.err" && pass "$what: source guest still running" \
		|| fail "$what: source does not say its guest is still running"
}

check_res() { # WHAT
	[ "$BACKEND" = rdma ] || return 0
	local mr qp
	mr=$(res_count mr) qp=$(res_count qp)
	[ "$mr" = "$mr0" ] && [ "$qp" = "$qp0" ] && pass "$1: MRs $mr / QPs $qp back to baseline" \
		|| fail "$1: MRs $mr (baseline $mr0), QPs $qp (baseline $qp0)"
}

port_active() { rdma link show "$DEV/1" 2>/dev/null | grep -q "state ACTIVE"; }

mr0=$(res_count mr) qp0=$(res_count qp)
case $MODE in
linkdel)
	[ "$BACKEND" = rdma ] && rdma link show "$DEV/1" >/dev/null 2>&1 \
		|| { echo "SKIP: linkdel needs the rdma backend and device $DEV"; exit 77; }
	if start_dirty_migration; then
		t0=$(now)
		# Removal waits for every user of the device to let go: in the background.
		rdma link del "$DEV" >"$tmp/del.out" 2>&1 &
		del=$!
		expect_both_fail "rdma link del $DEV" "$t0"
		grep -qiE "device removed|DEVICE_REMOVAL" "$tmp/src.err" "$tmp/dst.err" \
			&& pass "the failure names the device removal" || fail "no side names the device removal"
		wait_pid $del 60 && pass "rdma link del finished after $(elapsed "$t0") s" \
			|| fail "rdma link del: $(cat "$tmp/del.out")"
	fi
	rdma link show "$DEV/1" >/dev/null 2>&1 || rdma link add "$DEV" type rxe netdev "$NETDEV" \
		|| fail "cannot re-add $DEV"
	for _ in $(seq 300); do port_active && break; sleep 0.1; done
	port_active && pass "$DEV re-added and ACTIVE" || fail "$DEV not ACTIVE after re-adding"
	check_res "after rdma link del"
	retry "after rdma link del"
	;;
linkdown)
	[ "$BACKEND" = rdma ] || { echo "SKIP: linkdown is for the netdev under rxe"; exit 77; }
	if start_dirty_migration; then
		t0=$(now)
		ip link set "$NETDEV" down
		expect_both_fail "ip link set $NETDEV down" "$t0"
		grep -hiE "error|fail|closed|timeout|removed|port|link" "$tmp/src.err" "$tmp/dst.err" | tail -4
	fi
	ip link set "$NETDEV" up
	for _ in $(seq 300); do port_active && break; sleep 0.1; done
	port_active && pass "$NETDEV up, $DEV ACTIVE again" || fail "$DEV not ACTIVE after link up"
	check_res "after link down"
	retry "after link down"
	;;
memlock)
	[ "$BACKEND" = rdma ] || { echo "SKIP: memlock applies to the rdma backend"; exit 77; }
	# The limit applies to the destination only (a subshell).
	(ulimit -l 64 && exec "$R" listen "$HOST:0" --backend rdma) >"$tmp/dst.out" 2>"$tmp/dst.err" &
	dst=$!
	port=""
	for _ in $(seq 300); do
		port=$(sed -nE 's/.*waiting on .* port ([0-9]+).*/\1/p' "$tmp/dst.err")
		[ -n "$port" ] && break
		kill -0 $dst 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$port" ]; then
		expect_exit 1 "migrate to a destination with memlock 64 KiB" -- timeout 120 "$R" migrate \
			"$HOST:$port" --backend rdma --guest-size $GUEST --vcpus 1 --workload incr
		expect_out "still running" "source says its guest is still running"
		expect_out "memlock" "source names memlock: $(echo "$OUT" | tail -1)"
		wait_pid $dst 60; rd=$?
		[ $rd -eq 1 ] && pass "destination refused (exit 1): $(tail -1 "$tmp/dst.err")" \
			|| fail "destination exit $rd: $(cat "$tmp/dst.err")"
		grep -qiE "memlock|ulimit -l" "$tmp/dst.err" && pass "destination names the memlock limit" \
			|| fail "destination error lacks memlock: $(cat "$tmp/dst.err")"
	else
		# Refused before listening is acceptable too, if it says why.
		grep -qiE "memlock|ulimit -l" "$tmp/dst.err" && pass "listen refused: $(tail -1 "$tmp/dst.err")" \
			|| fail "destination did not start and does not say why: $(cat "$tmp/dst.err")"
	fi
	dst=""
	check_res "after the memlock refusal"
	;;
loss)
	if ! tc qdisc add dev "$LOSS_IF" root netem loss 2% 2>"$tmp/tc.err"; then
		echo "SKIP: tc netem unavailable on $LOSS_IF: $(cat "$tmp/tc.err") (needs the sch_netem module: rxe-vm --module sch_netem)"
		exit 77
	fi
	if [ "$BACKEND" = rdma ]; then
		echo "SKIP: rxe sends to its own address through its internal loopback path, not through"
		echo "SKIP: $LOSS_IF: netem cannot drop rxe packets between two ends on one host (needs two VMs)"
		exit 77
	fi
	# Moderate loss: completes, intact.
	retry "netem loss 2% on $LOSS_IF"
	# Heavy loss once the migration is in its dirty rounds: the data path.
	tc qdisc change dev "$LOSS_IF" root netem loss 0%
	if start_dirty_migration --timeout 30s --progress-timeout 15s; then
		tc qdisc change dev "$LOSS_IF" root netem loss 80%
		t0=$(now)
		wait_pid $src $BOUND; rs=$?
		ts=$(elapsed "$t0")
		src=""
		[ $rs -eq 1 ] && pass "netem loss 80%: source failed after $ts s: $(tail -1 "$tmp/src.err")" \
			|| fail "netem loss 80%: source exit $rs after $ts s (255: still running at the $BOUND s bound): $(tail -2 "$tmp/src.err")"
		grep -q "the guest is still running here" "$tmp/src.err" && pass "source guest still running" \
			|| fail "source does not say its guest is still running"
		wait_pid $dst $((BOUND + 120)); rd=$?
		[ $rd -eq 1 ] && pass "destination discarded after $(elapsed "$t0") s: $(tail -1 "$tmp/dst.err")" \
			|| fail "destination exit $rd after $(elapsed "$t0") s: $(tail -2 "$tmp/dst.err")"
		dst=""
	fi
	tc qdisc del dev "$LOSS_IF" root 2>/dev/null
	check_res "after netem loss"
	;;
*)
	echo "usage: net_faults.sh RDMIG IMAGE_CHECK BACKEND HOST linkdel|linkdown|memlock|loss" >&2
	exit 2
	;;
esac
finish
