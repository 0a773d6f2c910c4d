#!/usr/bin/env bash
# Stop the worker and the Prefect server started by infra/local/start.sh.
set -u
cd "$(dirname "$0")/../.."
STATE=${PREFECT_HOME:-$PWD/.prefect}/local
for name in worker server; do
  pidfile=$STATE/$name.pid
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null && echo "[stop] $name stopped"
    rm -f "$pidfile"
  fi
done
