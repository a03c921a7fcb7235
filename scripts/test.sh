#!/usr/bin/env bash
# The README's test command: set up, lint, run the tests, then the benchmarks in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet torch==2.13.0 2>/dev/null \
  || echo "note: torch==2.13.0 (CPU build) not installable here; using whatever torch pip resolves"
python3 -m pip install --quiet -e ".[dev]"
# syne-tune without its heavy optional dependencies (xgboost alone pulls ~200 MB of CUDA
# libraries): what its blackbox repository needs, so the syne-tune integration tests run here
python3 -m pip install --quiet --no-deps "syne-tune==0.16.0" \
  && python3 -m pip install --quiet dill scikit-learn fastparquet sortedcontainers tqdm \
  || echo "note: syne-tune not installable here; its tests skip"
python3 -m ruff check ecnas tests benchmarks
# A single-node SLURM for the cluster-campaign tests (they skip, saying why, where it cannot be
# installed or started: not root, no apt-get); stopped at the end if it was started here
if ! sinfo -h >/dev/null 2>&1; then
  bash scripts/slurm/start.sh --install \
    && trap 'bash scripts/slurm/stop.sh >/dev/null 2>&1 || true' EXIT \
    || echo "note: no SLURM here; tests/test_campaign_slurm.py skips"
fi
python3 -m pytest -q tests
# Benchmarks in quick mode: each figure the README quotes, timed briefly (not asserted).
ECNAS_BENCH_QUICK=1 python3 -m pytest -q benchmarks --benchmark-disable-gc --benchmark-min-rounds=3 \
  --benchmark-max-time=0.2 --benchmark-warmup=off -p no:cacheprovider
