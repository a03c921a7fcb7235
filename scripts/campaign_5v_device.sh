#!/bin/bash
# One device call of the 5V GPU campaign (docs/campaigns.md, "The 5V GPU campaign"):
#   bash scripts/campaign_5v_device.sh [ARGS of campaign_5v.py]
# (default --time-budget 450; a later --time-budget overrides it). Runs from any folder.
#
# The session resumes this GPU kind's store from campaigns/5v-gpu/ (CAMPAIGN_5V_FROM overrides)
# through writable copies in $OUT (the returned files are read-only: copied back and committed
# as they are, they resume all the same), and writes only this kind's store, table and sessions
# record there, beside session.json, log.txt and nvidia-smi.txt: 6 files (8 with the store's
# -wal and -shm after a killed call), inside the 8 a call returns, however many GPU kinds the
# folder holds. The store is checkpointed after every cell, so after a call killed at its time
# limit the store file alone holds every committed cell (its -wal may be dropped).
set -u
: "${OUT:?set OUT to the folder whose files come back}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FROM=${CAMPAIGN_5V_FROM:-$ROOT/campaigns/5v-gpu}
# the PYTHONPATH route: nothing to install (pip install -e . would fetch setuptools)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export ECNAS_CACHE_DIR=${ECNAS_CACHE_DIR:-/tmp/ecnas-cache}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,pci.device_id,driver_version,power.limit,power.draw \
    --format=csv > "$OUT/nvidia-smi.txt" 2>&1
else
  echo "nvidia-smi: not found" > "$OUT/nvidia-smi.txt"
fi
python3 "$ROOT/scripts/campaign_5v.py" --resume-from "$FROM" --dir "$OUT" --time-budget 450 \
  --json "$@" > "$OUT/session.json" 2> "$OUT/log.txt"
rc=$?
echo "campaign_5v rc=$rc"; tail -n 3 "$OUT/log.txt"
exit $rc
