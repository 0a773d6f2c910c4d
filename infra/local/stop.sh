#!/usr/bin/env bash
# Stop the worker, then the Prefect server, started by infra/local/start.sh.
# Each gets SIGTERM (its process group: the worker's flow-run subprocesses too), then SIGKILL
# after a grace period; a pid file is removed only once its process is gone.
set -u
cd "$(dirname "$0")/../.."
STATE=${PREFECT_HOME:-$PWD/.prefect}/local
GRACE_S=${STOP_GRACE_S:-20}

# running, and not a zombie waiting for its parent to reap it
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]; }

stop() {
  local name=$1 pidfile=$STATE/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if ! alive "$pid"; then
    rm -f "$pidfile"
    return 0
  fi
  # the process and its children (start.sh starts each with nohup in its own job)
  pkill -TERM -P "$pid" 2>/dev/null
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 "$GRACE_S"); do
    alive "$pid" || break
    sleep 1
  done
  if alive "$pid"; then
    echo "[stop] $name (pid $pid) did not stop in ${GRACE_S} s: SIGKILL"
    pkill -KILL -P "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
    sleep 1
  fi
  if alive "$pid"; then
    echo "[stop] $name (pid $pid) is still running; pid file kept: $pidfile" >&2
    return 1
  fi
  rm -f "$pidfile"
  echo "[stop] $name stopped"
}

status=0
stop worker || status=1
stop server || status=1
exit $status
