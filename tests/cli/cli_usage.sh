#!/usr/bin/env bash
# rdmig's command line: help, version, exit codes and messages for bad input.
set -u
. "$(dirname "$0")/lib.sh"
R=$1

expect_exit 0 "--help" -- "$R" --help
expect_out "Usage: rdmig" "--help shows usage"
expect_out "doctor" "--help lists doctor"
expect_exit 0 "--version" -- "$R" --version
expect_out "rdmig " "--version prints the version"
expect_exit 2 "no arguments" -- "$R"
expect_exit 2 "unknown command" -- "$R" frobnicate
expect_out "unknown command 'frobnicate'" "unknown command is named"

expect_exit 0 "doctor" -- "$R" doctor
expect_out "rdmig doctor:" "doctor prints its summary"
expect_exit 0 "doctor --json" -- "$R" doctor --json
case "$OUT" in "{"*"}") pass "doctor --json is an object" ;; *) fail "doctor --json: $OUT" ;; esac
expect_exit 2 "doctor bad option" -- "$R" doctor --bogus

expect_exit 0 "bw --help" -- "$R" bw --help
expect_out "--duration" "bw --help lists --duration"
expect_exit 2 "bw without address" -- "$R" bw
expect_out "missing server" "bw names the missing address"
expect_exit 2 "bw bad size" -- "$R" bw 127.0.0.1 --size 12Q
expect_out "invalid size '12Q'" "bw names the bad size"
expect_exit 2 "bw zero channels" -- "$R" bw 127.0.0.1 --channels 0
expect_out "between 1 and" "bw gives the channel range"
expect_exit 2 "bw bad backend" -- "$R" bw 127.0.0.1 --backend ib
expect_out "expected rdma or tcp" "bw names the backends"
expect_exit 2 "bw bad duration" -- "$R" bw 127.0.0.1 --duration -3
expect_exit 2 "bw bad port" -- "$R" bw 127.0.0.1:99999

# perftest's flags: what they mean there, or a clear refusal.
expect_exit 0 "bw --help" -- "$R" bw --help
expect_out "2 B to 8 MiB" "bw --help says which sizes -a runs"
expect_exit 2 "bw -b (perftest: bidirectional)" -- "$R" bw 127.0.0.1 -b
expect_out "bidirectional" "bw -b says what perftest means by it"
expect_exit 2 "bw -c UC" -- "$R" bw 127.0.0.1 -c UC
expect_out "connection type" "bw -c is the connection type"
expect_exit 2 "bw -d DEV --backend tcp" -- "$R" bw 127.0.0.1 -d mlx5_0 --backend tcp
expect_out "tcp backend uses" "bw -d is refused on tcp"
expect_exit 2 "bw -d on a device this host lacks" -- "$R" bw 127.0.0.1 -d nosuchdev0
expect_out "no RDMA device 'nosuchdev0'" "bw names the missing device"
expect_exit 2 "bw -a -s" -- "$R" bw 127.0.0.1 -a -s 4k
expect_exit 2 "bw -p against ADDR:PORT" -- "$R" bw 127.0.0.1:5000 -p 6000
expect_out "disagree" "bw says the ports disagree"
expect_exit 2 "bw --compress on rdma" -- "$R" bw 127.0.0.1 --backend rdma --compress 1
expect_out "tcp backend only" "bw: compression is tcp only"

# Migration options checked against each other before connecting.
expect_exit 2 "migrate --cold --min-rounds 3" -- "$R" migrate 127.0.0.1:1 --guest-size 1M \
	--cold --min-rounds 3
expect_out "--cold copies the guest in one pass" "says why --cold and --min-rounds conflict"
expect_exit 2 "migrate --min-rounds above --max-rounds" -- "$R" migrate 127.0.0.1:1 \
	--guest-size 1M --min-rounds 5 --max-rounds 2
expect_out "--max-rounds 2" "names both limits"
expect_exit 2 "migrate --cold --dirty-source uffd-wp" -- "$R" migrate 127.0.0.1:1 \
	--guest-size 1M --cold --dirty-source uffd-wp
expect_exit 2 "listen --tls --backend rdma" -- "$R" listen 127.0.0.1:0 --tls --backend rdma
expect_out "tcp backend only" "listen: TLS is tcp only"
expect_exit 2 "listen bad --numa" -- "$R" listen 127.0.0.1:0 --numa 3-1
expect_out "--numa" "listen names --numa"
expect_exit 0 "topo --json" -- "$R" topo --json
[ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"])' <<<"$OUT")" = auto ] \
	&& pass "topo --json is the plan object" || fail "topo --json: $OUT"
expect_exit 0 "doctor --json vocabulary" -- "$R" doctor --json
[ "$(python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["event"], j["command"], j["backend"] in ("tcp", "rdma"))' <<<"$OUT")" = "report doctor True" ] \
	&& pass "doctor --json: event report, command doctor, its backend" || fail "doctor json: $OUT"
finish
