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
finish
