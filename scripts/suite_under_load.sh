#!/usr/bin/env bash
# The whole suite (README's command 2) N times (default 3) with both cores of a 2-core
# machine kept busy by two `yes > /dev/null`: a landing must not depend on a quiet machine.
# Each run's output goes to ${LOG_DIR:-/tmp}/suite-under-load-<i>.log, ending "rc <status>".
set -u
cd "$(dirname "$0")/.."
n=${1:-3}
log_dir=${LOG_DIR:-/tmp}
status=0
for i in $(seq 1 "$n"); do
  yes > /dev/null & y1=$!
  yes > /dev/null & y2=$!
  start=$(date +%s)
  python -m pytest -q -p no:cacheprovider > "$log_dir/suite-under-load-$i.log" 2>&1
  rc=$?
  kill "$y1" "$y2"
  wait "$y1" "$y2" 2>/dev/null
  echo "rc $rc in $(( $(date +%s) - start )) s" >> "$log_dir/suite-under-load-$i.log"
  echo "run $i: $(grep -E '[0-9]+ (passed|failed)' "$log_dir/suite-under-load-$i.log" | tail -1) (rc $rc)"
  [ "$rc" -eq 0 ] || status=1
done
exit "$status"
