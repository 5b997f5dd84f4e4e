#!/usr/bin/env bash
# Runs the web server (with the simulator mounted) and the django-q2 worker in
# the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
BIN=.venv/bin

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "Stopping..."
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

$BIN/python manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
$BIN/python manage.py qcluster &
pids+=($!)

base="http://127.0.0.1:$PORT"
cat <<MSG

Hive Portal demo is starting:
  Portal     $base/portal/          (moderator / moderator)
  Admin      $base/admin/           (admin / admin)
  API docs   $base/api/v1/docs/
  Simulator  $base/simulator/stats
  $(grep '^API key:' var/seed.log | tail -1)
Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
