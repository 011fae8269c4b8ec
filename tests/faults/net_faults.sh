#!/usr/bin/env bash
# Network and environment faults with the rdmig tool (issue #8), meant for
# the SoftRoCE VM (they change links and routing: never run them on a shared
# host). rdma faults act on the pair of rxe devices that
# soft-roce-setup/rxe-pair joins with a veth: the source leaves through
# $RDMIG_PAIR_A_IF / $RDMIG_PAIR_A_DEV and the destination listens on
# $RDMIG_PAIR_B_IP, so the packets cross a link that can be cut or degraded
# (a single rxe device loops its own traffic back past every qdisc).
#   linkdel   `rdma link del` of the source's rxe device in the dirty rounds
#   linkdown  `ip link set down` of the source's netdev in the dirty rounds
#   hang-dest SIGSTOP of the destination in the dirty rounds (keepalive)
#   hang-src  SIGSTOP of the source in the dirty rounds (keepalive)
#   memlock   `ulimit -l 64` before `rdmig listen`: refused at setup
#   oom       destination in a cgroup with memory.max 64M, guest 128M:
#             refused at setup (VM only)
#   loss      tc netem: 2% (rdma 0.5%) completes intact, 80% fails within
#             the bound
#   delay     tc netem delay 20ms each way: completes intact
# usage: net_faults.sh RDMIG IMAGE_CHECK BACKEND HOST MODE
# HOST is used for tcp and memlock; rdma link faults use the pair.
# Env: RDMIG_PAIR_* (see rxe-pair --help), FAULT_BOUND_S (60).
# Every wait is bounded; exit 77 (skip) with a SKIP line where the fault
# cannot be injected here. A failed migration does not end `rdmig listen`:
# it logs the failure, discards, and waits for the next source, so each
# fault checks that, and the retry goes to the same listener where the
# fault left it usable (else it is stopped and a fresh one takes the retry).
set -u
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/lib.sh"
R=$1 CHK=$2 BACKEND=$3 HOST=$4 MODE=$5
BOUND=${FAULT_BOUND_S:-60}
PAIR=$(dirname "$0")/../../soft-roce-setup/rxe-pair
GUEST=16M
tmp=$(mktemp -d)
dst="" src="" QDISC_IFS=""
cleanup() {
	[ -n "$dst" ] && kill -CONT "$dst" 2>/dev/null && kill -9 "$dst" 2>/dev/null
	[ -n "$src" ] && kill -CONT "$src" 2>/dev/null && kill -9 "$src" 2>/dev/null
	for i in $QDISC_IFS; do tc qdisc del dev "$i" root 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# The rdma faults other than memlock need the pair; tcp ones use loopback.
DEV="" NETDEV="" QDISC_IFS=lo
if [ "$BACKEND" = rdma ] && [ "$MODE" != memlock ]; then
	if [ "${RDMIG_IN_RXE_VM:-}" != 1 ]; then
		echo "SKIP: $MODE changes links and routing: it runs in the SoftRoCE VM only"
		echo "SKIP: (soft-roce-setup/rxe-vm --module veth --module sch_netem -- ctest -L rdma)"
		exit 77
	fi
	if ! OUT=$("$PAIR" up 2>&1); then
		fail "rxe-pair up: $OUT"
		finish
	fi
	eval "$("$PAIR" env | tr ' ' '\n' | sed 's/^/export /')"
	HOST=$RDMIG_PAIR_B_IP DEV=$RDMIG_PAIR_A_DEV NETDEV=$RDMIG_PAIR_A_IF
	QDISC_IFS="$RDMIG_PAIR_A_IF $RDMIG_PAIR_B_IF"
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }

# rdma res counts of user objects (kernel QPs have no pid); -1 without the tool.
res_count() { rdma res show "$1" 2>/dev/null | grep -c ' pid ' || true; }

start_dest() { start_listener "$tmp/dst.out" "$@"; } # [listen options]: $dst, $port

# The listener of a failed migration: it must log the failure, discard
# (no RAM dump) and go on listening.
dst_discarded() { # WHAT T0 SECONDS
	local end=$(($(date +%s) + $3))
	while ! grep -q "nothing kept, waiting for the next source" "$tmp/dst.err"; do
		if [ "$(date +%s)" -ge "$end" ] || ! kill -0 "$dst" 2>/dev/null; then
			fail "$1: destination did not log a discarded migration within $3 s (alive: $(kill -0 "$dst" 2>/dev/null && echo yes || echo no)): $(tail -3 "$tmp/dst.err")"
			return 1
		fi
		sleep 0.05
	done
	pass "$1: destination discarded after $(elapsed "$2") s and still listens: $(grep -m1 "nothing kept" "$tmp/dst.err")"
	[ ! -e "$tmp/rd.bin" ] && pass "$1: no RAM dump from the discarded migration" \
		|| fail "$1: the discarded migration left a RAM dump"
	kill -0 "$dst" 2>/dev/null && pass "$1: destination process still serving" \
		|| fail "$1: destination exited after the failed migration"
}

# A listener that is not to take the retry: Ctrl-C (SIGTERM) ends it, exit 1.
stop_dst() { # WHAT
	[ -n "$dst" ] || return 0
	kill -TERM "$dst" 2>/dev/null
	wait_pid "$dst" 30; local rd=$?
	[ $rd -eq 1 ] && pass "$1: listener stopped by SIGTERM (exit 1)" || fail "$1: listener exit $rd on SIGTERM"
	dst=""
}

# A retry: dumps equal, incr check passes. With a listener still there
# (after dst_discarded, started with --dump-ram rd.bin) it goes to that one,
# which shows that it still serves; else to a fresh destination.
# RETRY_ARGS: extra words for the source.
# shellcheck disable=SC2086
retry() {
	rm -f "$tmp/rs.bin"
	if [ -n "$dst" ] && kill -0 "$dst" 2>/dev/null; then
		pass "$1: retry to the listener of the failed migration (port $port)"
	else
		rm -f "$tmp/rd.bin"
		start_dest --dump-ram "$tmp/rd.bin" || return
	fi
	if timeout 300 "$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size $GUEST \
		--vcpus 1 --workload incr --min-rounds 3 --channels 2 --dump-ram "$tmp/rs.bin" ${RETRY_ARGS:-} \
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
	rm -f "$tmp/rd.bin"
	# shellcheck disable=SC2086 # DST_ARGS: extra words for the destination
	start_dest --dump-ram "$tmp/rd.bin" ${DST_ARGS:-} || return 1
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

# Both sides must fail within the bound, the source saying its guest runs,
# the destination discarding and listening on.
expect_both_fail() { # WHAT T0
	local what=$1 t0=$2 rs
	wait_pid $src $BOUND; rs=$?
	ts=$(elapsed "$t0")
	src=""
	[ $rs -eq 1 ] && pass "$what: source failed (exit 1) after ${ts} s: $(tail -1 "$tmp/src.err")" \
		|| fail "$what: source exit $rs after ${ts} s (255: still running at the ${BOUND} s bound): $(tail -3 "$tmp/src.err")"
	dst_discarded "$what" "$t0" "$BOUND"
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

# Put the pair back (routes after link up, the device after link del).
repair() {
	local out
	out=$("$PAIR" up 2>&1) && pass "$1: $DEV and its routes back, ports ACTIVE" \
		|| fail "$1: rxe-pair up: $out"
}

# netem on every qdisc interface; skip (77) where netem is missing.
netem() { # add|change ARGS...
	local op=$1 i
	shift
	for i in $QDISC_IFS; do
		if ! tc qdisc "$op" dev "$i" root netem "$@" 2>"$tmp/tc.err"; then
			echo "SKIP: tc netem unavailable on $i: $(cat "$tmp/tc.err") (needs the sch_netem module: rxe-vm --module sch_netem)"
			exit 77
		fi
	done
}

mr0=$(res_count mr) qp0=$(res_count qp)
rdma_pair_only() {
	[ "$BACKEND" = rdma ] || { echo "SKIP: $MODE is a fault of the link under rxe"; exit 77; }
}
case $MODE in
linkdel)
	rdma_pair_only
	if start_dirty_migration; then
		t0=$(now)
		# Removal waits for every user of the device to let go: in the background.
		rdma link del "$DEV" >"$tmp/del.out" 2>&1 &
		del=$!
		expect_both_fail "rdma link del $DEV" "$t0"
		grep -qiE "device removed|DEVICE_REMOVAL" "$tmp/src.err" \
			&& pass "the source names the device removal" || fail "the source does not name the device removal: $(tail -2 "$tmp/src.err")"
		wait_pid $del 60 && pass "rdma link del finished after $(elapsed "$t0") s" \
			|| fail "rdma link del: $(cat "$tmp/del.out")"
	fi
	# The repair may recreate the listener's device: a fresh listener takes the retry.
	stop_dst "after rdma link del"
	repair "after rdma link del"
	check_res "after rdma link del"
	retry "after rdma link del"
	;;
linkdown)
	rdma_pair_only
	if start_dirty_migration; then
		t0=$(now)
		ip link set "$NETDEV" down
		expect_both_fail "ip link set $NETDEV down" "$t0"
	fi
	stop_dst "after link down"
	ip link set "$NETDEV" up
	repair "after link down and up"
	check_res "after link down"
	retry "after link down"
	;;
hang-dest | hang-src)
	# A peer that stops answering without closing anything: only the
	# keepalive (rdma) or TCP_USER_TIMEOUT (tcp, data in flight) notice.
	[ "$BACKEND" = rdma ] || [ "$MODE" = hang-dest ] \
		|| { echo "SKIP: tcp has no application keepalive: a stopped source is found by the phase timeouts (docs/reliability.md)"; exit 77; }
	DST_ARGS="--peer-timeout 5s"
	if start_dirty_migration --peer-timeout 5s; then
		if [ "$MODE" = hang-dest ]; then stopped=$dst other=$src; else stopped=$src other=$dst; fi
		kill -STOP "$stopped"
		t0=$(now)
		if [ "$MODE" = hang-dest ]; then
			wait_pid "$other" $BOUND; ro=$?
			to=$(elapsed "$t0")
			src=""
			[ $ro -eq 1 ] && pass "$MODE: source failed after $to s (peer timeout 5 s): $(tail -1 "$tmp/src.err")" \
				|| fail "$MODE: source exit $ro after $to s (255: still running at the $BOUND s bound): $(tail -2 "$tmp/src.err")"
			# The stopped listener wakes up to a dead connection: it discards and listens on.
			kill -CONT "$stopped"
			dst_discarded "$MODE: the stopped destination, once continued," "$t0" "$BOUND"
		else
			dst_discarded "$MODE: destination" "$t0" "$BOUND"
			# The stopped source wakes up to a dead connection: it must fail too.
			kill -CONT "$stopped"
			wait_pid "$stopped" $BOUND; rs=$?
			src=""
			[ $rs -eq 1 ] && pass "$MODE: the stopped source failed once continued" \
				|| fail "$MODE: the stopped source exit $rs once continued"
		fi
		grep -q "the guest is still running here" "$tmp/src.err" && pass "$MODE: source guest still running" \
			|| fail "$MODE: source does not say its guest is still running"
	fi
	check_res "after $MODE"
	retry "after $MODE"
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
		dst_discarded "memlock: destination refused" "$(now)" 60
		grep -qiE "memlock|ulimit -l" "$tmp/dst.err" && pass "destination names the memlock limit" \
			|| fail "destination error lacks memlock: $(cat "$tmp/dst.err")"
		# Its limit stays: it is stopped rather than retried.
		stop_dst "memlock"
	else
		# Refused before listening is acceptable too, if it says why.
		grep -qiE "memlock|ulimit -l" "$tmp/dst.err" && pass "listen refused: $(tail -1 "$tmp/dst.err")" \
			|| fail "destination did not start and does not say why: $(cat "$tmp/dst.err")"
	fi
	dst=""
	check_res "after the memlock refusal"
	;;
oom)
	# The destination's cgroup allows 64 MiB; the guest is 128 MiB: refused at
	# setup, named, instead of an OOM kill halfway through the copy.
	[ "${RDMIG_IN_RXE_VM:-}" = 1 ] || { echo "SKIP: oom creates cgroups: it runs in the SoftRoCE VM only"; exit 77; }
	cgroot=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
	if [ -z "$cgroot" ]; then
		cgroot=$tmp/cgroup2
		mkdir -p "$cgroot" && mount -t cgroup2 none "$cgroot" \
			|| { echo "SKIP: cannot mount cgroup2"; exit 77; }
	fi
	echo +memory >"$cgroot/cgroup.subtree_control" 2>/dev/null
	cg=$cgroot/rdmig-oom-$$
	mkdir "$cg" && echo $((64 << 20)) >"$cg/memory.max" \
		|| { echo "SKIP: no cgroup memory controller here"; exit 77; }
	(echo "$BASHPID" >"$cg/cgroup.procs" && exec "$R" listen "$HOST:0" --backend "$BACKEND") \
		>"$tmp/dst.out" 2>"$tmp/dst.err" &
	dst=$!
	port=""
	for _ in $(seq 300); do
		port=$(sed -nE 's/.*waiting on .* port ([0-9]+).*/\1/p' "$tmp/dst.err")
		[ -n "$port" ] && break
		kill -0 $dst 2>/dev/null || break
		sleep 0.1
	done
	expect_exit 1 "migrate a 128 MiB guest to a destination limited to 64 MiB" -- timeout 120 \
		"$R" migrate "$HOST:$port" --backend "$BACKEND" --guest-size 128M --vcpus 1 --workload incr
	expect_out "still running" "source says its guest is still running"
	expect_out "cgroup" "source names the destination's limit: $(echo "$OUT" | grep -m1 cgroup)"
	dst_discarded "oom: destination refused at setup" "$(now)" 60
	grep -q "memory.max" "$tmp/dst.err" && pass "destination names memory.max" \
		|| fail "destination error does not name the limit: $(cat "$tmp/dst.err")"
	# It stays in the 64 MiB cgroup: a fresh listener takes the retry.
	stop_dst "oom"
	rmdir "$cg" 2>/dev/null
	[ "$cgroot" = "$tmp/cgroup2" ] && umount "$cgroot"
	check_res "after the memory refusal"
	retry "after the memory refusal"
	;;
delay)
	# No jitter: jitter reorders packets, which RoCE's go-back-N turns into
	# retransmissions. 40 ms round trips cut rxe's window-bound rate to a few
	# MiB/s, below what the incr guest dirties: it converges only by
	# accepting a longer switchover, which is what an operator would do.
	netem add delay 20ms
	RETRY_ARGS="--downtime-limit 10s"
	retry "netem delay 20ms each way on $QDISC_IFS"
	RETRY_ARGS=""
	check_res "after netem delay"
	;;
loss)
	# Moderate loss, both directions: completes, intact. RoCE assumes a
	# lossless fabric and rxe recovers go-back-N, so "moderate" is 0.5%
	# there (2% on tcp), with a longer switchover allowed.
	rate=2%
	if [ "$BACKEND" = rdma ]; then rate=0.5% RETRY_ARGS="--downtime-limit 10s"; fi
	netem add loss $rate
	retry "netem loss $rate on $QDISC_IFS"
	RETRY_ARGS=""
	# Heavy loss once the migration is in its dirty rounds: the data path.
	netem change loss 0%
	if start_dirty_migration --timeout 30s --progress-timeout 15s --peer-timeout 10s; then
		netem change loss 80%
		t0=$(now)
		wait_pid $src $BOUND; rs=$?
		ts=$(elapsed "$t0")
		src=""
		[ $rs -eq 1 ] && pass "netem loss 80%: source failed after $ts s: $(tail -1 "$tmp/src.err")" \
			|| fail "netem loss 80%: source exit $rs after $ts s (255: still running at the $BOUND s bound): $(tail -2 "$tmp/src.err")"
		grep -q "the guest is still running here" "$tmp/src.err" && pass "source guest still running" \
			|| fail "source does not say its guest is still running"
		# tcp: the destination waits for the next fence (progress timeout + commit timeout).
		dbound=$BOUND
		[ "$BACKEND" = tcp ] && dbound=$((BOUND + 120))
		dst_discarded "netem loss 80%" "$t0" "$dbound"
	fi
	for i in $QDISC_IFS; do tc qdisc del dev "$i" root 2>/dev/null; done
	retry "after netem loss 80%"
	check_res "after netem loss"
	;;
*)
	echo "usage: net_faults.sh RDMIG IMAGE_CHECK BACKEND HOST linkdel|linkdown|hang-dest|hang-src|memlock|oom|loss|delay" >&2
	exit 2
	;;
esac
finish
