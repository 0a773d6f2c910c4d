#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by start_local_cluster.sh (slurmd, slurmctld, munged).
# Only daemons recorded in their pid files are signalled; missing daemons are not an error.
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/lib/discovery-slurm}

stop_pidfile() {
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    echo "[slurm-local] stopping $name ($pid)"
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
stop_pidfile munged /run/munge/munged.pid
