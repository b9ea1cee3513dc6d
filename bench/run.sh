#!/usr/bin/env bash
# run.sh — clickedge's benchmark suite (issue 5); `make bench` runs it.
#
#   bash bench/run.sh                 # full: 3 rounds × 10 s per scenario (~15 min)
#   BENCH_QUICK=1 bash bench/run.sh   # 1 round × 3 s, small fills (~3 min): for development
#   BENCH_FULL=1 bash bench/run.sh    # full, with the 1 M-click outbox drain and worker ingest
#   BENCH_ONLY='redirect-durable' BENCH_QUICK=1 bash bench/run.sh
#
# It installs what the suite can use and may be missing (wrk is required;
# nginx is the second baseline: installed with apt-get where that works,
# skipped otherwise), builds the driver, and runs it. The driver
# (bench/cmd/benchrun) builds clickedge, the bare fasthttp baseline, the
# load generator and nats-server into bench/.work/bin, runs every scenario
# pinned with taskset, and writes bench/RESULTS.md (quick mode:
# bench/.work/RESULTS-quick.md). Every environment variable it reads is
# listed at the top of bench/cmd/benchrun/main.go.
#
# Everything listens on 127.0.0.1 only. Every child process is stopped when
# the suite ends, fails or is interrupted (trap below; the driver also kills
# its children on signals, and they die with it through PR_SET_PDEATHSIG).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
GO="${GO:-go}"
work="${BENCH_WORK:-$here/.work}"
mkdir -p "$work/bin" "$work/logs"

driver_pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n "$driver_pid" ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$driver_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$driver_pid" 2>/dev/null || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

apt_install() { # apt_install <package>: bounded, quiet, services not started
	local p="$1" rc=0 policy=/usr/sbin/policy-rc.d added=""
	# Debian starts a newly installed nginx on port 80; policy-rc.d (exit
	# 101) forbids that, so that the suite's nginx is the only one and it
	# listens on loopback only. Removed again right after.
	if [[ ! -e "$policy" ]] && as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy" 2>/dev/null; then
		added=1
	fi
	as_root timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" \
		>"$work/logs/apt-$p.log" 2>&1 || rc=$?
	[[ -n "$added" ]] && as_root rm -f "$policy"
	return "$rc"
}

# Best effort: a package that cannot be installed only removes its scenarios.
install_pkg() { # install_pkg <binary> <package>...
	local bin="$1" p
	shift
	command -v "$bin" >/dev/null 2>&1 && return 0
	[[ -x "/usr/sbin/$bin" ]] && return 0
	command -v apt-get >/dev/null 2>&1 || { echo "run.sh: no apt-get; $bin not installed" >&2; return 1; }
	echo "run.sh: installing $* (apt-get)" >&2
	for p in "$@"; do apt_install "$p" && return 0; done
	# The package lists may be missing or stale: refresh once and retry.
	as_root timeout 300 apt-get update -q >"$work/logs/apt-update.log" 2>&1 || true
	for p in "$@"; do apt_install "$p" && return 0; done
	echo "run.sh: could not install $* (see $work/logs/apt-*.log)" >&2
	return 1
}

install_pkg wrk wrk || { echo "run.sh: wrk is required" >&2; exit 1; }
install_pkg nginx nginx-light nginx || echo "run.sh: continuing without the nginx baseline" >&2

(cd "$here" && "$GO" build -o "$work/bin/benchrun" ./cmd/benchrun)
cd "$root"
"$work/bin/benchrun" &
driver_pid=$!
wait "$driver_pid"
