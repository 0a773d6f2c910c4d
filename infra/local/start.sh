#!/usr/bin/env bash
# Embedded default: a local Prefect server (SQLite, 127.0.0.1), the `local` process work pool,
# the deployments of prefect.yaml, one worker, then `discovery/sun-eval` on the quick profile.
# Stop everything with infra/local/stop.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DISCOVERY_REPO=$PWD
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}
export PREFECT_API_URL=${PREFECT_API_URL:-http://127.0.0.1:4200/api}
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=${PREFECT_UI_ENABLED:-true}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PREFECT=.venv/bin/prefect
STATE=$PREFECT_HOME/local
mkdir -p "$STATE"
PROFILE=${PROFILE:-quick}
# Optional dotted-key overrides of the profile as JSON, e.g. the 3-round loop with fine-tuning:
#   OVERRIDES='{"rounds": 3, "loop.finetune": true}' make sun-eval
OVERRIDES=${OVERRIDES:-}
params=(--param profile="$PROFILE")
[ -n "$OVERRIDES" ] && params+=(--param overrides="$OVERRIDES")

if ! curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1; then
  echo "[start] Prefect server on 127.0.0.1:4200 (logs: $STATE/server.log)"
  nohup $PREFECT server start --host 127.0.0.1 --port 4200 >"$STATE/server.log" 2>&1 &
  echo $! >"$STATE/server.pid"
  for _ in $(seq 1 240); do
    curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf "$PREFECT_API_URL/health" >/dev/null || { tail -20 "$STATE/server.log"; exit 1; }
fi
.venv/bin/python infra/local/work_pools.py
# the deployments and the worker start side by side (each is an interpreter's start-up)
$PREFECT --no-prompt deploy --all >"$STATE/deploy.log" 2>&1 &
deploy_pid=$!
if ! { [ -f "$STATE/worker.pid" ] && kill -0 "$(cat "$STATE/worker.pid")" 2>/dev/null; }; then
  nohup $PREFECT worker start --pool local >"$STATE/worker.log" 2>&1 &
  echo $! >"$STATE/worker.pid"
fi
wait "$deploy_pid" || { tail -30 "$STATE/deploy.log"; exit 1; }
echo "[start] running discovery/sun-eval (profile $PROFILE${OVERRIDES:+, overrides $OVERRIDES}); UI: http://127.0.0.1:4200"
set +e
$PREFECT deployment run discovery/sun-eval "${params[@]}" --watch --watch-interval 10 \
  | tee "$STATE/last-run.log"
run_status=${PIPESTATUS[0]}
set -e
if [ "$run_status" -ne 0 ] || ! grep -q "finished successfully" "$STATE/last-run.log"; then
  run_id=$(sed -n 's/.*UUID: \([0-9a-f-]*\).*/\1/p' "$STATE/last-run.log" | head -1)
  echo
  echo "[start] discovery/sun-eval did not complete. Last lines of flow run $run_id's log:" >&2
  [ -n "$run_id" ] && $PREFECT flow-run logs "$run_id" --tail --num-logs 25 >&2
  exit 1
fi
report=$(ls -td runs/"$PROFILE"-*/report/index.html 2>/dev/null | head -1)
echo
echo "Report: ${report:-not found (see $STATE/last-run.log)}"
echo "Prefect UI: http://127.0.0.1:4200 (stop the server and worker with infra/local/stop.sh)"
