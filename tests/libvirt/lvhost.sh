# shellcheck shell=bash
# Two libvirt "hosts" on one machine, for tests/libvirt/libvirt_migrate.sh
# and scripts/libvirt-pair. Sourced, not run.
#
# A host is a set of namespaces held open by a small init process:
#   pid    so that the init reaps the QEMU that libvirtd daemonizes (a zombie
#          source QEMU makes libvirt wait for it and fail the migration), and
#          so that killing the init ends everything the host started
#   net    its own loopback and one end of a veth pair to the other host
#   mount  a private /run, a /sys that shows this host's network, and its own /etc/libvirt, /var/lib/libvirt,
#          /var/log/libvirt and /var/cache/libvirt, bound from LV_DIR/NAME:
#          both libvirtd instances use the default paths, and the migration
#          socket has the same path on both hosts, as on two real machines
# Every host gets its own host_uuid (both would otherwise read the same
# SMBIOS UUID, and libvirt refuses to migrate a guest to its own host).
#
# State lives in files under LV_DIR (NAME/init.pid, ...), so that separate
# invocations of scripts/libvirt-pair find the hosts again.

LV_QEMU_USER=libvirt-qemu
LV_QEMU_GROUP=libvirt-qemu
# Where both hosts' migration sockets live (private /run of each host).
LV_SOCK_DIR=/run/rdmig
LV_NET=10.78.0
LV_TCP_PORT=16509

lv_log() { printf 'lvhost: %s\n' "$*" >&2; }

# lv_missing: prints why two libvirt hosts cannot run here, nothing if they can.
lv_missing() {
	local t
	if [ "$(id -u)" -ne 0 ]; then
		echo "needs root (namespaces, mounts, libvirtd)"
		return
	fi
	for t in unshare nsenter ip libvirtd virsh qemu-system-x86_64; do
		command -v "$t" >/dev/null 2>&1 && continue
		echo "$t missing (scripts/install-deps installs libvirt-daemon-system, libvirt-clients, qemu-system-x86, iproute2)"
		return
	done
	if ! id "$LV_QEMU_USER" >/dev/null 2>&1; then
		echo "user $LV_QEMU_USER missing (created by libvirt-daemon-system's postinst)"
		return
	fi
	if ! unshare --net --mount --pid --fork --mount-proc true 2>/dev/null; then
		echo "cannot create pid, network and mount namespaces here ('unshare --net --mount --pid --fork --mount-proc true' fails)"
	fi
}

# lv_setup DIR: the directory for every host's state (created, mode 0755 so
# that QEMU, running as $LV_QEMU_USER, reaches the guest's disk and dumps).
lv_setup() {
	LV_DIR=$1
	mkdir -p "$LV_DIR" && chmod 0755 "$LV_DIR"
}

lv_pid() { cat "$LV_DIR/$1/init.pid" 2>/dev/null; }

# lv_in NAME CMD...: run CMD inside host NAME (its pid, net and mount namespaces).
# The lifeline (lv_host_up) is not passed on: only the test may hold it.
lv_in() {
	local pid
	pid=$(lv_pid "$1") || {
		lv_log "host $1 is not up"
		return 1
	}
	shift
	if [ -n "${LV_LIFE_FD:-}" ]; then
		nsenter -t "$pid" -p -m -n -- "$@" {LV_LIFE_FD}>&-
	else
		nsenter -t "$pid" -p -m -n -- "$@"
	fi
}

lv_virsh() {
	local h=$1
	shift
	lv_in "$h" virsh -q -c qemu:///system "$@"
}

# lv_bg NAME PIDFILE LOG CMD...: CMD in the background inside host NAME, its
# output in LOG; PIDFILE gets its pid as this machine sees it (nsenter's
# child: a signal to nsenter would not reach it).
lv_bg() {
	local name=$1 pidfile=$2 log=$3 ns pid
	shift 3
	ns=$(lv_pid "$name") || return 1
	if [ -n "${LV_LIFE_FD:-}" ]; then
		nsenter -t "$ns" -p -m -n -- "$@" >"$log" 2>&1 </dev/null {LV_LIFE_FD}>&- &
	else
		nsenter -t "$ns" -p -m -n -- "$@" >"$log" 2>&1 </dev/null &
	fi
	ns=$!
	disown "$ns"
	for _ in $(seq 50); do
		pid=$(pgrep -P "$ns" | head -n1)
		[ -n "$pid" ] && break
		kill -0 "$ns" 2>/dev/null || break
		sleep 0.1
	done
	echo "${pid:-$ns}" >"$pidfile"
}

lv_conf() {
	local d=$1 ip=$2
	cat >"$d/etc/libvirtd.conf" <<-EOF
		# One of the two test hosts: qemu+tcp without auth, reachable only on the
		# private veth between the two network namespaces.
		listen_tls = 0
		listen_tcp = 1
		listen_addr = "$ip"
		tcp_port = "$LV_TCP_PORT"
		auth_tcp = "none"
		auth_unix_rw = "none"
		auth_unix_ro = "none"
		host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
		log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
	EOF
	# cgroups and a private /dev per QEMU are what a sandboxed test host may
	# not allow; stdio to a file needs no virtlogd.
	cat >"$d/etc/qemu.conf" <<-EOF
		user = "$LV_QEMU_USER"
		group = "$LV_QEMU_GROUP"
		security_driver = "none"
		remember_owner = 0
		cgroup_controllers = [ ]
		namespaces = [ ]
		stdio_handler = "file"
	EOF
}

# The init of a host: private mounts, then reap until told to stop. With a
# lifeline (lv_lifeline), the host ends when its owner does, however it ends.
# shellcheck disable=SC2016
LV_INIT='
set -e
H=$1 LIFE=$2
mount -t tmpfs -o mode=0755 lvrun /run
mount -t sysfs lvsys /sys
mount --bind "$H/etc" /etc/libvirt
mount --bind "$H/lib" /var/lib/libvirt
mount --bind "$H/log" /var/log/libvirt
mount --bind "$H/cache" /var/cache/libvirt
mkdir -p /run/libvirt
ip link set lo up
set +e
trap "exit 0" TERM
if [ -p "$LIFE" ]; then
	( read -r _ <"$LIFE"; kill -TERM 1 ) &
fi
touch "$H/ready"
while :; do sleep 3600 & wait $!; done
'

# lv_lifeline: tie the hosts started after it to this shell: when it exits,
# by any means (a ctest timeout's SIGKILL too), the fifo's last writer is
# gone, every host's init reads end-of-file and stops, and with it all that
# the host started. Only this shell holds the writing end (lv_in, lv_bg and
# lv_host_up close it in what they start).
lv_lifeline() {
	rm -f "$LV_DIR/life"
	mkfifo -m 0600 "$LV_DIR/life" || return 1
	# Read-write: does not wait for a reader.
	exec {LV_LIFE_FD}<>"$LV_DIR/life"
}

# lv_host_up NAME IP: start host NAME; lv_link gives it address IP, on which
# its libvirtd (lv_libvirtd) listens for qemu+tcp.
lv_host_up() {
	local name=$1 ip=$2 d="$LV_DIR/$1" up pid
	mkdir -p "$d"/{etc,lib,log,cache}
	rm -f "$d/ready"
	lv_conf "$d" "$ip"
	if [ -n "${LV_LIFE_FD:-}" ]; then
		unshare --net --mount --pid --fork --mount-proc --propagation private --kill-child \
			-- bash -c "$LV_INIT" lvinit "$d" "$LV_DIR/life" </dev/null \
			>"$d/init.log" 2>&1 {LV_LIFE_FD}>&- &
	else
		unshare --net --mount --pid --fork --mount-proc --propagation private --kill-child \
			-- bash -c "$LV_INIT" lvinit "$d" "$LV_DIR/life" </dev/null >"$d/init.log" 2>&1 &
	fi
	up=$!
	disown "$up"
	for _ in $(seq 100); do
		[ -e "$d/ready" ] && break
		kill -0 "$up" 2>/dev/null || break
		sleep 0.1
	done
	pid=$(pgrep -P "$up" | head -n1)
	if [ ! -e "$d/ready" ] || [ -z "$pid" ]; then
		lv_log "host $name did not come up:"
		cat "$d/init.log" >&2
		return 1
	fi
	echo "$pid" >"$d/init.pid"
	lv_log "host $name up (init pid $pid)"
}

# lv_link A B: veth between the two hosts, $LV_NET.1 on A and .2 on B.
lv_link() {
	local a b
	a=$(lv_pid "$1") && b=$(lv_pid "$2") || return 1
	nsenter -t "$a" -n ip link add lv0 type veth peer name lv0 netns "$b" &&
		nsenter -t "$a" -n ip addr add "$LV_NET.1/24" dev lv0 &&
		nsenter -t "$a" -n ip link set lv0 up &&
		nsenter -t "$b" -n ip addr add "$LV_NET.2/24" dev lv0 &&
		nsenter -t "$b" -n ip link set lv0 up
}

# lv_libvirtd NAME: start libvirtd in host NAME and wait (30 s) until virsh
# reaches it. The migration socket's directory is part of a host's set-up,
# as it would be on a real one: relays come and go.
lv_libvirtd() {
	local name=$1 d="$LV_DIR/$1"
	lv_sock_dir "$name" || return 1
	lv_bg "$name" "$d/libvirtd.pid" "$d/libvirtd.out" libvirtd --listen
	for _ in $(seq 60); do
		if lv_virsh "$name" version >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	lv_log "libvirtd on host $name does not answer after 30 s:"
	tail -n 20 "$d/libvirtd.out" "$d/log/libvirtd.log" >&2 2>/dev/null
	return 1
}

# lv_pair_up: hosts src ($LV_NET.1) and dst ($LV_NET.2), linked, each with its
# libvirtd, the destination's reachable from the source at $LV_DST_URI.
LV_DST_URI="qemu+tcp://$LV_NET.2/system"
lv_pair_up() {
	lv_host_up src "$LV_NET.1" && lv_host_up dst "$LV_NET.2" && lv_link src dst || return 1
	lv_libvirtd src && lv_libvirtd dst || return 1
	if ! lv_in src virsh -q -c "$LV_DST_URI" version >/dev/null; then
		lv_log "the source cannot reach the destination's libvirtd at $LV_DST_URI"
		return 1
	fi
}

# lv_migrate [VIRSH-OPTION...]: from host src, move the guest to dst with
# libvirt's unix-socket migration, bounded by $LV_MIGRATE_BOUND_S. libvirt
# 9.0 refuses --listen-address with a unix:// URI: the destination QEMU
# listens on the --migrateuri path itself, so both ends use one path.
# LV_PARALLEL=0: one connection, no multifd.
LV_MIGRATE_BOUND_S=180
LV_PARALLEL=4
lv_migrate() {
	local a=(migrate --live --p2p --persistent --undefinesource)
	[ "$LV_PARALLEL" -gt 0 ] && a+=(--parallel --parallel-connections "$LV_PARALLEL")
	a+=(--migrateuri "unix://$LV_SOCK" "$@" "$LV_DOM" "$LV_DST_URI")
	echo "+ virsh ${a[*]}"
	lv_in src timeout "$LV_MIGRATE_BOUND_S" virsh -q -c qemu:///system "${a[@]}"
}

# lv_host_down NAME: end host NAME and everything it started.
lv_host_down() {
	local name=$1 pid
	pid=$(lv_pid "$name") || return 0
	# Killing a pid namespace's init kills every process in it.
	kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$LV_DIR/$name/init.pid"
}

# ---- rdmig's relays at libvirt's migration socket -------------------------------

# The path libvirt hands both QEMUs for `--migrateuri unix://PATH`: the source
# QEMU connects to it (rdmig qemu src serves it), the destination QEMU listens
# on it (rdmig qemu dst feeds it). The same path on both hosts.
LV_SOCK=$LV_SOCK_DIR/vm.sock
LV_RELAY_PORT=18515

# The relays prove the same pre-shared key (lv_relay_key) to each other. The
# source QEMU runs as $LV_QEMU_USER and must be able to connect to the
# relay's socket, and nobody else.
LV_RELAY_SOCK_OPTS=(--socket-mode 0660 --socket-group "$LV_QEMU_GROUP")

# lv_relay_key: a fresh pre-shared key for both relays (mode 0600).
lv_relay_key() {
	(umask 077 && head -c 32 /dev/urandom >"$LV_DIR/relay.key")
}

# lv_sock_dir NAME: the socket directory, where only root and QEMU's group
# may go (the destination QEMU creates its incoming socket there).
lv_sock_dir() {
	lv_in "$1" install -d -m 0770 -g "$LV_QEMU_GROUP" "$LV_SOCK_DIR"
}

# lv_relay NAME READY CMD...: start the relay CMD in host NAME, its log (with
# a line per stream opened) in LV_DIR/NAME/relay.log, and wait (10 s) until
# `READY NAME LOG` succeeds.
lv_relay() {
	local name=$1 ready=$2 log="$LV_DIR/$1/relay.log"
	shift 2
	: >"$log"
	RDMIG_LOG=info lv_bg "$name" "$LV_DIR/$name/relay.pid" "$log" "$@"
	for _ in $(seq 100); do
		"$ready" "$name" "$log" && return 0
		kill -0 "$(cat "$LV_DIR/$name/relay.pid")" 2>/dev/null || break
		sleep 0.1
	done
	lv_log "rdmig $2 $3 on host $name did not start:"
	cat "$log" >&2
	return 1
}

lv_dst_ready() { grep -q '^listening ' "$2"; }

# The socket exists (the relay made it 0660, group $LV_QEMU_GROUP).
lv_src_ready() {
	lv_in "$1" test -S "$LV_SOCK"
}

# lv_relay_dst NAME RDMIG: `rdmig qemu dst` on host NAME ($LV_NET.2), feeding
# the destination QEMU's incoming socket, once it listens.
lv_relay_dst() {
	lv_relay "$1" lv_dst_ready "$2" qemu dst --listen "$LV_NET.2:$LV_RELAY_PORT" \
		--qemu-incoming "unix:$LV_SOCK" --key-file "$LV_DIR/relay.key"
}

# lv_relay_src NAME RDMIG: `rdmig qemu src` on host NAME at $LV_SOCK, carrying
# every connection of the source QEMU to the destination relay, once QEMU
# may connect to it. As docs/integration.md says: one stream set of the
# main channel + $LV_PARALLEL multifd channels per migration.
lv_relay_src() {
	lv_relay "$1" lv_src_ready "$2" qemu src --connect "$LV_NET.2:$LV_RELAY_PORT" \
		--socket "$LV_SOCK" --key-file "$LV_DIR/relay.key" --streams $((LV_PARALLEL + 1)) \
		"${LV_RELAY_SOCK_OPTS[@]}"
}

# lv_relay_stop NAME [SIGNAL]: stop the relay of host NAME with SIGNAL (TERM),
# then SIGKILL after 5 s.
lv_relay_stop() {
	local f="$LV_DIR/$1/relay.pid" pid
	pid=$(cat "$f" 2>/dev/null) || return 0
	kill -"${2:-TERM}" "$pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	rm -f "$f"
}

# ---- the guest -------------------------------------------------------------------

LV_DOM='rdmig-guest'
# Where the guest increments (tests/qemu/guest.S GUEST_START).
LV_GUEST_START=0x100000

# lv_guest_files IMG RAM_MIB: the boot disk (IMG padded to 1 MiB, read-only in
# the guest, so that libvirt sees nothing to copy and nothing unsafe) and
# the domain XML, in LV_DIR/guest. Both hosts see the same path, as shared
# storage would be on real hosts. TCG: no KVM needed.
lv_guest_files() {
	local img=$1 mib=$2 g="$LV_DIR/guest"
	install -d -m 0755 "$g" && install -d -m 0700 -o "$LV_QEMU_USER" "$g/dump" || return 1
	cp "$img" "$g/disk.img" && truncate -s 1M "$g/disk.img" || return 1
	if ! runuser -u "$LV_QEMU_USER" -- test -r "$g/disk.img"; then
		lv_log "$LV_QEMU_USER cannot read $g/disk.img: every directory above $LV_DIR must be searchable by others (TMPDIR=/tmp)"
		return 1
	fi
	cat >"$g/domain.xml" <<-EOF
		<domain type='qemu'>
		  <name>$LV_DOM</name>
		  <memory unit='MiB'>$mib</memory>
		  <vcpu>1</vcpu>
		  <os>
		    <type arch='x86_64' machine='pc'>hvm</type>
		    <boot dev='hd'/>
		  </os>
		  <on_poweroff>destroy</on_poweroff>
		  <on_reboot>destroy</on_reboot>
		  <on_crash>destroy</on_crash>
		  <devices>
		    <emulator>$(command -v qemu-system-x86_64)</emulator>
		    <disk type='file' device='disk'>
		      <driver name='qemu' type='raw'/>
		      <source file='$g/disk.img'/>
		      <target dev='vda' bus='virtio'/>
		      <readonly/>
		    </disk>
		    <controller type='usb' model='none'/>
		    <memballoon model='none'/>
		  </devices>
		</domain>
	EOF
}

# lv_hmp NAME CMD: a human monitor command to the guest's QEMU on host NAME.
lv_hmp() {
	lv_virsh "$1" qemu-monitor-command "$LV_DOM" --hmp "$2"
}

# lv_guest_byte NAME: byte 0 of the first page the guest increments.
lv_guest_byte() {
	lv_hmp "$1" "xp /1bx $LV_GUEST_START" | sed -n 's/.*: 0x\([0-9a-f]*\).*/\1/p'
}

# lv_guest_runs NAME: the guest's counter moves within 10 s (a loaded host
# may not schedule a TCG vCPU for a while).
lv_guest_runs() {
	local first now
	first=$(lv_guest_byte "$1")
	[ -n "$first" ] || return 1
	for _ in $(seq 100); do
		sleep 0.1
		now=$(lv_guest_byte "$1")
		[ -n "$now" ] && [ "$now" != "$first" ] && return 0
	done
	lv_log "host $1: guest counter stays at 0x$first for 10 s"
	return 1
}

# lv_guest_dump NAME FILE MIB: the guest's increment range, with the guest paused.
lv_guest_dump() {
	lv_hmp "$1" "pmemsave $LV_GUEST_START $(($3 << 20)) \"$2\"" >/dev/null && [ -s "$2" ]
}
