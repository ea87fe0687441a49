#!/usr/bin/env bash
# The S3 service of the tests: a throwaway one-node Ceph RADOS Gateway on 127.0.0.1.
#
#   tests/s3/rgw.sh start DIR [PORT]   one monitor, one memstore OSD, radosgw (beast), a user
#                                      with fixed test keys; writes DIR/env for tests to source
#   tests/s3/rgw.sh stop DIR           kills what start started, then removes DIR
#   tests/s3/rgw.sh crash-gateway DIR SECONDS
#                                      kills radosgw (SIGKILL: a crash, connections reset), keeps
#                                      it down SECONDS, starts it again and waits until it answers
#                                      (monitor, OSD and data stay): for fault tests
#
# DIR/env sets SNAP_TEST_S3_ENDPOINT, SNAP_TEST_S3_ACCESS_KEY, SNAP_TEST_S3_SECRET_KEY and
# SNAP_TEST_S3_REGION. Exit 77: the Debian packages are missing (tools/install-deps.sh) or the
# gateway cannot start here (port taken, daemon fails); everything started is stopped again.
#
# Environment:
#   SNAP_TEST_RGW_PORT      S3 port when PORT is not given (default 7480)
#   SNAP_TEST_RGW_MON_PORT  monitor port (default 6789): one gateway per machine per port
#   SNAP_TEST_RGW_MEM_MIB   memstore size of the OSD, held in RAM as objects are written
#                           (default 2048)
#   SNAP_TEST_RGW_TIMEOUT   seconds each wait may take (default 60)
#
# Inside the cluster auth is off (one process tree, 127.0.0.1 only); the gateway itself checks
# S3 signatures (SigV2/SigV4) against the user's keys as AWS does.
set -euo pipefail

ACCESS_KEY=SNAPTESTACCESSKEY0001
SECRET_KEY=snaptest-secret-key-0000000000000000000001
REGION=us-east-1
UID_NAME=snaptest
TIMEOUT="${SNAP_TEST_RGW_TIMEOUT:-60}"

usage() { echo "usage: $0 start DIR [PORT] | stop DIR | crash-gateway DIR SECONDS" >&2; exit 2; }
say() { echo "rgw: $*" >&2; }

# pid of a daemon we started, only while it is still that daemon (its command line names DIR).
our_pid() { # DIR NAME
	local f="$1/$2.pid" pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$1/ceph.conf" || return 1
	echo "$pid"
}

kill_wait() { # GRACE PID...: SIGTERM, up to GRACE tenths of a second, then SIGKILL
	local grace="$1" pid i; shift
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for ((i = 0; i < grace; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
	done
}

stop() { # DIR
	local d="$1" pid
	[ -d "$d" ] || return 0
	[ -f "$d/ceph.conf" ] || { say "$d is not a gateway directory, not removing it"; return 1; }
	# Gateway and OSD first, while the monitor is there to hear them go. Nothing is kept, so
	# the grace is short: radosgw 16.2 often hangs in its SIGTERM shutdown (seen here when
	# stopped seconds after start), so it gets 2 s, the others 10 s, then SIGKILL.
	if pid=$(our_pid "$d" rgw); then kill_wait 20 "$pid"; fi
	if pid=$(our_pid "$d" osd); then kill_wait 100 "$pid"; fi
	if pid=$(our_pid "$d" mon); then kill_wait 100 "$pid"; fi
	rm -rf "$d"
}

port_busy() { # PORT
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Runs CMD... until it succeeds, at most $TIMEOUT seconds; each try bounded too.
wait_for() { # WHAT CMD...
	local what="$1" t0=$SECONDS; shift
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - t0 >= TIMEOUT)); then
			say "timed out after ${TIMEOUT}s waiting for $what"
			return 1
		fi
		sleep 0.5
	done
}

alive() { # NAME: the daemon is still running
	our_pid "$D" "$1" >/dev/null || { say "ceph-$1 exited; last lines of its log:"; tail -n 20 "$D/log/$1.out" "$D/log/"*"$1"*.log 2>/dev/null >&2; return 1; }
}

fail() { # MESSAGE: stop what was started, exit 77 (cannot run here)
	say "$*"
	for f in "$D"/log/*; do
		[ -s "$f" ] || continue
		echo "--- $f (last lines)" >&2
		tail -n 8 "$f" >&2
	done
	stop "$D" || true
	exit 77
}

start() { # DIR [PORT]
	D="$1"
	local port="${2:-${SNAP_TEST_RGW_PORT:-7480}}" mon_port="${SNAP_TEST_RGW_MON_PORT:-6789}"
	local mem_mib="${SNAP_TEST_RGW_MEM_MIB:-2048}" t0=$SECONDS p missing=()
	TIMEOUT="${SNAP_TEST_RGW_TIMEOUT:-60}"
	for p in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool uuidgen curl timeout; do
		command -v "$p" >/dev/null || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "missing ${missing[*]} (tools/install-deps.sh installs radosgw ceph-mon ceph-osd uuid-runtime curl)"
		exit 77
	fi
	case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
	if [ -e "$D" ]; then
		[ -f "$D/ceph.conf" ] || { say "$D exists and is not a gateway directory"; exit 2; }
		if our_pid "$D" mon >/dev/null || our_pid "$D" rgw >/dev/null; then
			say "a gateway is already running in $D; stop it first"; exit 2
		fi
		rm -rf "$D"
	fi
	for p in "$port" "$mon_port"; do
		if port_busy "$p"; then
			say "127.0.0.1:$p is in use (another gateway? set SNAP_TEST_RGW_PORT / SNAP_TEST_RGW_MON_PORT)"
			exit 77
		fi
	done
	mkdir -p "$D"/mon "$D"/osd "$D"/log "$D"/run
	local fsid conf="$D/ceph.conf"; fsid=$(uuidgen)
	cat >"$conf" <<-CONF
	[global]
	fsid = $fsid
	mon host = v1:127.0.0.1:$mon_port
	mon initial members = a
	auth cluster required = none
	auth service required = none
	auth client required = none
	ms bind msgr2 = false
	public addr = 127.0.0.1
	osd pool default size = 1
	osd pool default min size = 1
	mon allow pool size one = true
	osd pool default pg num = 8
	osd pool default pgp num = 8
	osd pool default pg autoscale mode = off
	osd crush chooseleaf type = 0
	mon warn on pool no redundancy = false
	run dir = $D/run
	admin socket = $D/run/\$name.asok
	log file = $D/log/\$name.log
	mon data = $D/mon/\$cluster-\$id
	osd data = $D/osd/\$cluster-\$id
	osd objectstore = memstore
	memstore device bytes = $((mem_mib * 1024 * 1024))
	osd class update on start = false
	osd crush update on start = false
	[client.rgw.t]
	rgw frontends = beast endpoint=127.0.0.1:$port
	rgw dns name = 127.0.0.1
	# deleted objects' data goes to garbage collection, by default after 2 hours: free the
	# memstore within seconds instead, so tests that write big objects do not fill it
	rgw gc obj min wait = 5
	rgw gc processor period = 5
	CONF
	# ceph CLI calls: bounded, never waiting on a monitor that is not there
	cephc() { timeout 20 ceph -c "$conf" --connect-timeout 10 "$@"; }

	monmaptool --create --add a "v1:127.0.0.1:$mon_port" --fsid "$fsid" "$D/monmap" \
		>"$D/log/monmap.out" 2>&1 || fail "monmaptool failed"
	timeout 30 ceph-mon -c "$conf" --mkfs -i a --monmap "$D/monmap" >"$D/log/mon-mkfs.out" 2>&1 ||
		fail "ceph-mon --mkfs failed"
	setsid ceph-mon -c "$conf" -i a -f </dev/null >"$D/log/mon.out" 2>&1 &
	echo $! >"$D/mon.pid"
	wait_for "the monitor" cephc mon stat || fail "the monitor did not answer"
	alive mon || fail "the monitor died"

	local uuid id; uuid=$(uuidgen)
	id=$(cephc osd create "$uuid") || fail "ceph osd create failed"
	mkdir -p "$D/osd/ceph-$id"
	timeout 60 ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >"$D/log/osd-mkfs.out" 2>&1 ||
		fail "ceph-osd --mkfs failed"
	setsid ceph-osd -c "$conf" -i "$id" -f </dev/null >"$D/log/osd.out" 2>&1 &
	echo $! >"$D/osd.pid"
	cephc osd crush add "osd.$id" 1.0 root=default host=localhost >"$D/log/crush.out" 2>&1 ||
		fail "ceph osd crush add failed"
	osd_up() { alive osd && cephc osd dump | grep -q "^osd\.$id up"; }
	wait_for "the OSD to come up" osd_up || fail "the OSD did not come up"

	setsid radosgw -c "$conf" -n client.rgw.t -f </dev/null >"$D/log/rgw.out" 2>&1 &
	echo $! >"$D/rgw.pid"
	rgw_up() { alive rgw && curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/"; }
	wait_for "the gateway to answer on 127.0.0.1:$port" rgw_up || fail "the gateway did not answer"

	timeout "$TIMEOUT" radosgw-admin -c "$conf" user create --uid="$UID_NAME" \
		--display-name="snapbundle tests" --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
		>"$D/log/user.out" 2>&1 || fail "radosgw-admin user create failed"

	cat >"$D/env" <<-ENV
	SNAP_TEST_RGW_DIR=$D
	SNAP_TEST_S3_ENDPOINT=http://127.0.0.1:$port
	SNAP_TEST_S3_ACCESS_KEY=$ACCESS_KEY
	SNAP_TEST_S3_SECRET_KEY=$SECRET_KEY
	SNAP_TEST_S3_REGION=$REGION
	ENV
	echo "rgw: S3 at http://127.0.0.1:$port (monitor 127.0.0.1:$mon_port, memstore ${mem_mib} MiB) ready after $((SECONDS - t0))s; env in $D/env"
}

crash_gateway() { # DIR SECONDS
	D="$1"
	local down="$2" pid port
	pid=$(our_pid "$D" rgw) || { say "no gateway of $D is running"; return 1; }
	port=$(sed -n 's|^SNAP_TEST_S3_ENDPOINT=http://127.0.0.1:||p' "$D/env")
	kill -KILL "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	sleep "$down"
	setsid radosgw -c "$D/ceph.conf" -n client.rgw.t -f </dev/null >>"$D/log/rgw.out" 2>&1 &
	echo $! >"$D/rgw.pid"
	rgw_up() { alive rgw && curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/"; }
	wait_for "the gateway to answer again on 127.0.0.1:$port" rgw_up
}

[ $# -ge 2 ] || usage
case "$1" in
crash-gateway) [ $# -eq 3 ] || usage; crash_gateway "$2" "$3" ;;
start) [ $# -le 3 ] || usage; start "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || usage; d="$2"; case "$d" in /*) ;; *) d="$PWD/$d" ;; esac; stop "$d" ;;
*) usage ;;
esac
