#!/usr/bin/env bash
# Stop the single-node SLURM that scripts/slurm/start.sh started: cancel the jobs ecnas started
# there (the worker jobs ecnas names ecnas-<store digest>; no other job, whoever owns it), then
# stop slurmd, slurmctld and munged. Idempotent: what is not running is skipped. The configuration
# and state folder stay (start.sh reuses them).
set -euo pipefail

STATE=${ECNAS_SLURM_DIR:-/var/lib/ecnas-slurm}

[ "$(id -u)" = 0 ] || { echo "slurm/stop.sh: must run as root" >&2; exit 2; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if running "$STATE/slurmctld.pid" && command -v squeue >/dev/null; then
  ours() { squeue -h -o '%i %j' 2>/dev/null | awk '$2 ~ /^ecnas-/ {print $1}'; }
  ids=$(ours)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086  # one id per word
    scancel --full --quiet $ids 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(ours)" ] && break; sleep 0.1; done
  fi
fi
for d in slurmd slurmctld; do
  if running "$STATE/$d.pid"; then
    pid=$(cat "$STATE/$d.pid"); kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done
if [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
  kill "$(cat /run/munge/munged.pid)"
fi
echo "slurm stopped"
