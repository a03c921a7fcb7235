#!/bin/bash
# One device call of the 5V GPU campaign (docs/campaigns.md, "The 5V GPU campaign"), from the
# repository root: bash scripts/campaign_5v_device.sh [ARGS of campaign_5v.py]
# (default --time-budget 450; a later --time-budget overrides it)
# The campaign's files are copied to $OUT first and the session writes them there, so a call
# killed at its time limit still returns every committed cell (the store and its -wal file).
set -u
: "${OUT:?set OUT to the folder whose files come back}"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ECNAS_CACHE_DIR=/tmp/ecnas-cache
nvidia-smi --query-gpu=name,pci.device_id,driver_version,power.limit,power.draw --format=csv \
  > "$OUT/nvidia-smi.txt" 2>&1
for f in campaigns/5v-gpu/*.sqlite campaigns/5v-gpu/*.parquet campaigns/5v-gpu/*.sessions.json; do
  [ -e "$f" ] && cp -p "$f" "$OUT/"
done
python3 scripts/campaign_5v.py --dir "$OUT" --time-budget 450 --json "$@" \
  > "$OUT/session.json" 2> "$OUT/log.txt"
rc=$?
# fold the write-ahead log into the store, so the store alone holds every cell
python3 -c 'import glob, sqlite3, sys
for p in glob.glob(sys.argv[1] + "/*.sqlite"):
    db = sqlite3.connect(p); db.execute("PRAGMA wal_checkpoint(TRUNCATE)"); db.close()' "$OUT"
echo "campaign_5v rc=$rc"; tail -n 3 "$OUT/log.txt"
exit $rc
