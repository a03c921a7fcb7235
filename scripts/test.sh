#!/usr/bin/env bash
# The README's test command: set up, lint, run the tests, then the benchmarks in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip install, quiet, without the warning about running as root (CI does). pip's resolver
# complaint that syne-tune lacks xgboost and statsmodels (left out on purpose, see below)
# becomes one note; any other conflict is shown as pip wrote it
pip_install() {
  local err rc=0 expected="^syne-tune [^ ]+ requires (xgboost|statsmodels), which is not installed"
  local header="^ERROR: pip's dependency resolver does not currently take into account"
  err=$(mktemp)
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet "$@" 2>"$err" || rc=$?
  if grep -qE "$expected" "$err" \
      && ! grep -vE "$expected" "$err" | grep -qE "requires .*(not installed|but you have)"; then
    grep -vE "$expected|$header" "$err" >&2 || true
    echo "note: syne-tune is installed without xgboost and statsmodels on purpose (its" \
         "blackbox repository does not need them); pip's resolver names them: expected" >&2
  else
    cat "$err" >&2
  fi
  rm -f "$err"
  return "$rc"
}

python3 -m pip install --quiet torch==2.13.0 2>/dev/null \
  || echo "note: torch==2.13.0 (CPU build) not installable here; using whatever torch pip resolves"
pip_install -e ".[dev]"
# syne-tune without its heavy optional dependencies (xgboost alone pulls ~200 MB of CUDA
# libraries): what its blackbox repository needs, so the syne-tune integration tests run here.
# Users install `ecnas[synetune]`, which tests/packaging/test_packaging_extras_install.py installs as they do.
{ pip_install --no-deps "syne-tune==0.16.0" \
    && pip_install dill scikit-learn fastparquet sortedcontainers tqdm huggingface_hub; } \
  || echo "note: syne-tune not installable here; its tests skip"
# Debian's Prometheus server, which tests/integrations/test_integrations_prometheus_server.py starts
if ! command -v prometheus >/dev/null; then
  { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      && apt-get update -qq >/dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           prometheus >/dev/null; } \
    || echo "note: Debian's prometheus package not installable here; the Prometheus server test skips"
fi
python3 -m ruff check ecnas tests benchmarks
# A single-node SLURM for the cluster-campaign tests (they skip, saying why, where it cannot be
# installed or started: not root, no apt-get); stopped at the end if it was started here
if ! sinfo -h >/dev/null 2>&1; then
  bash scripts/slurm/start.sh --install \
    && trap 'bash scripts/slurm/stop.sh >/dev/null 2>&1 || true' EXIT \
    || echo "note: no SLURM here; tests/campaign/test_campaign_slurm.py skips"
fi
python3 -m pytest -q --durations=15 tests
# Each extra installed as users install it, one fresh venv each (a few minutes; own step so
# that `pytest tests` stays quick: there these tests skip unless ECNAS_TEST_EXTRAS=1)
ECNAS_TEST_EXTRAS=1 python3 -m pytest -q -p no:cacheprovider tests/packaging/test_packaging_extras_install.py
# Benchmarks in quick mode: each figure the README quotes, timed briefly (not asserted).
ECNAS_BENCH_QUICK=1 python3 -m pytest -q benchmarks --benchmark-disable-gc --benchmark-min-rounds=3 \
  --benchmark-max-time=0.2 --benchmark-warmup=off -p no:cacheprovider
