#!/usr/bin/env bash
# The README's test command: install, lint, run the tests, each extra in a fresh venv, then the
# benchmarks in quick mode. Every stage runs even when an earlier one failed; each is reported
# (ok/FAILED) at the end, and the exit status is non-zero if any failed.
#
#   bash scripts/test.sh                  # touches nothing outside the clone and its Python env
#   bash scripts/test.sh --with-services  # also, as root: apt-get installs prometheus, slurmctld,
#                                         # slurmd and munge; writes /etc/slurm/*.conf and a
#                                         # munge key; starts the daemons (stopped at the end if
#                                         # started here); runs the SLURM tests. .ci/run does this.
#
# ECNAS_TEST_SERVICES=1 is the same as --with-services. Without it the SLURM tests skip, saying
# why. ECNAS_TEST_WORKERS sets pytest-xdist's worker count (default: one per core, plus one).
set -uo pipefail
cd "$(dirname "$0")/.."

services=${ECNAS_TEST_SERVICES:-0}
for arg in "$@"; do
  case "$arg" in
    --with-services) services=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
export ECNAS_TEST_SERVICES=$services

declare -a stages=() results=()
failed=0
# stage NAME COMMAND...: run one stage, remember how it went, never stop the script
stage() {
  local name=$1 rc=0
  shift
  echo "== $name" >&2
  "$@" || rc=$?
  stages+=("$name")
  if [ "$rc" = 0 ]; then results+=("ok"); else results+=("FAILED (exit $rc)"); failed=1; fi
}

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

install() {
  python3 -m pip install --quiet torch==2.13.0 2>/dev/null \
    || echo "note: torch==2.13.0 (CPU build) not installable here; using whatever torch pip resolves"
  pip_install -e ".[dev]" || return
  # syne-tune without its heavy optional dependencies (xgboost alone pulls ~200 MB of CUDA
  # libraries): what its blackbox repository needs, so the syne-tune integration tests run
  # here. Users install `ecnas[synetune]`, which tests/packaging/test_packaging_extras_install.py
  # installs as they do.
  { pip_install --no-deps "syne-tune==0.16.0" \
      && pip_install dill scikit-learn fastparquet sortedcontainers tqdm huggingface_hub; } \
    || echo "note: syne-tune not installable here; its tests skip"
}

# Asked for only (--with-services): Debian's Prometheus server, which
# tests/integrations/test_integrations_prometheus_server.py starts (it skips where prometheus
# is absent), and a single-node SLURM for the cluster-campaign tests, stopped at the end if
# it was started here (scripts/slurm/stop.sh cancels only the jobs ecnas named, ecnas-*).
services() {
  if ! command -v prometheus >/dev/null; then
    { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
             prometheus >/dev/null; } \
      || echo "note: Debian's prometheus package not installable here; the Prometheus server test skips"
  fi
  if ! sinfo -h >/dev/null 2>&1; then
    if bash scripts/slurm/start.sh --install; then
      trap 'bash scripts/slurm/stop.sh >/dev/null 2>&1 || true' EXIT
    else
      echo "note: no SLURM here; tests/campaign/test_campaign_slurm.py skips"
    fi
  fi
  return 0
}

stage "install" install
[ "$services" = 1 ] && stage "services (prometheus, SLURM)" services
stage "ruff" python3 -m ruff check ecnas tests benchmarks
stage "mypy" python3 -m mypy ecnas
# One worker per core plus one: about a third of the suite's time is spent waiting (on run
# processes, SLURM's scheduler, Dask's start-up, timers), which the extra worker fills (2 cores:
# 7 min 41 s with 3 workers, 10 min 56 s with 2). --dist loadgroup keeps the tests that share a
# service (SLURM's queue, xdist_group("slurm")) or a docs page on one worker, in order
workers=${ECNAS_TEST_WORKERS:-$(( $(nproc 2>/dev/null || echo 1) + 1 ))}
stage "pytest tests" python3 -m pytest -q --durations=15 -n "$workers" \
  --dist loadgroup tests
# Each extra installed as users install it, one fresh venv each (a few minutes; own stage so
# that `pytest tests` stays quick: there these tests skip unless ECNAS_TEST_EXTRAS=1)
stage "extras, one venv each" env ECNAS_TEST_EXTRAS=1 python3 -m pytest -q -p no:cacheprovider \
  tests/packaging/test_packaging_extras_install.py
# Benchmarks in quick mode: each figure the README quotes, timed briefly (not asserted).
stage "benchmarks (quick)" env ECNAS_BENCH_QUICK=1 python3 -m pytest -q benchmarks \
  --benchmark-disable-gc --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
  --benchmark-warmup=off -p no:cacheprovider

echo "== summary" >&2
for i in "${!stages[@]}"; do printf '%-32s %s\n' "${stages[$i]}" "${results[$i]}" >&2; done
exit "$failed"
