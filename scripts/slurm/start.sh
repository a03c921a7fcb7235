#!/usr/bin/env bash
# Start a single-node SLURM on this machine (munge + slurmctld + slurmd), as root, without
# systemd. Idempotent: daemons already running are left alone; a second call only waits for
# the node to be idle. The configuration is written to /etc/slurm/slurm.conf and gres.conf,
# which are marked as ecnas's; a slurm.conf ecnas did not write is never replaced.
#
#   bash scripts/slurm/start.sh            # start (or check) the cluster
#   bash scripts/slurm/start.sh --install  # first apt-get install the packages if absent
#   bash scripts/slurm/stop.sh             # stop it, cancelling the jobs ecnas named (ecnas-*)
#
# The node offers the machine's CPUs and ECNAS_SLURM_FAKE_GPUS (default 2) fake GPUs as gres
# (files under the state folder stand in for /dev/nvidiaN: SLURM sets CUDA_VISIBLE_DEVICES
# from them as from real boards). Set ECNAS_SLURM_FAKE_GPUS=0 on a machine with real GPUs and
# write your own gres.conf. State and logs: ECNAS_SLURM_DIR (default /var/lib/ecnas-slurm).
set -euo pipefail

STATE=${ECNAS_SLURM_DIR:-/var/lib/ecnas-slurm}
CONF_DIR=/etc/slurm
MARK="# written by ecnas scripts/slurm/start.sh"
GPUS=${ECNAS_SLURM_FAKE_GPUS:-2}

die() { echo "slurm/start.sh: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
if [ "${1:-}" = "--install" ] && ! command -v slurmctld >/dev/null; then
  # Debian/Ubuntu: the packages install in seconds; elsewhere install them yourself
  command -v apt-get >/dev/null || die "slurmctld not found and no apt-get to install it"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge \
    >/dev/null || die "apt-get could not install slurmctld slurmd slurm-client munge"
fi
for b in munged slurmctld slurmd sinfo scontrol; do
  command -v "$b" >/dev/null || die "$b not found: apt-get install -y slurmctld slurmd munge"
done

HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

mkdir -p "$STATE"/{ctld,slurmd,log,gres} "$CONF_DIR"

# -- munge: the key exists after the Debian package's install; make one if not --------------
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged
  else
    munged --force
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# -- configuration ------------------------------------------------------------------------------
if [ -e "$CONF_DIR/slurm.conf" ] && ! grep -qxF "$MARK" "$CONF_DIR/slurm.conf"; then
  die "$CONF_DIR/slurm.conf exists and was not written by ecnas; it is left as it is"
fi
GRES_LINE=""
if [ "$GPUS" -gt 0 ]; then
  # slurmd wants character devices: each stand-in is /dev/null's (1, 3) under another name
  for i in $(seq 0 $((GPUS - 1))); do
    f="$STATE/gres/gpu$i"
    [ -c "$f" ] && continue
    rm -f "$f"
    if ! mknod "$f" c 1 3 2>/dev/null; then
      echo "slurm/start.sh: note: mknod not permitted here, so no fake GPUs (gres) are offered" >&2
      GPUS=0; break
    fi
  done
  [ "$GPUS" -gt 0 ] && GRES_LINE="Gres=gpu:$GPUS"
fi
conf=$(cat <<CONF
$MARK
ClusterName=ecnas
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
GresTypes=gpu
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# a quick test cluster: a stopped slurmd is noticed after 60 s, a cancelled job dies in 2 s
SlurmdTimeout=60
SlurmctldTimeout=30
KillWait=2
MinJobAge=30
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB $GRES_LINE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
)
gres=""
if [ "$GPUS" -gt 0 ]; then
  gres="$MARK
NodeName=$HOST Name=gpu File=$STATE/gres/gpu[0-$((GPUS - 1))]"
fi
changed=0
if [ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" > "$CONF_DIR/slurm.conf.tmp" && mv "$CONF_DIR/slurm.conf.tmp" "$CONF_DIR/slurm.conf"
  changed=1
fi
if [ -e "$CONF_DIR/gres.conf" ] && ! grep -qxF "$MARK" "$CONF_DIR/gres.conf"; then
  die "$CONF_DIR/gres.conf exists and was not written by ecnas; it is left as it is"
fi
if [ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" != "$gres" ]; then
  printf '%s\n' "$gres" > "$CONF_DIR/gres.conf.tmp" && mv "$CONF_DIR/gres.conf.tmp" "$CONF_DIR/gres.conf"
  changed=1
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$changed" = 1 ]; then  # daemons started with another configuration: restart them
  for d in slurmd slurmctld; do
    if running "$STATE/$d.pid"; then kill "$(cat "$STATE/$d.pid")"; fi
  done
  for _ in $(seq 100); do
    running "$STATE/slurmd.pid" || running "$STATE/slurmctld.pid" || break; sleep 0.1
  done
fi
running "$STATE/slurmctld.pid" || slurmctld
running "$STATE/slurmd.pid" || slurmd

# -- wait for the node ---------------------------------------------------------------------------
for _ in $(seq 300); do
  st=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1 || true)
  case "$st" in
    idle|mixed|allocated|completing) echo "slurm up: node $HOST $st, $CPUS CPUs, $GPUS fake GPU(s), state in $STATE"; exit 0 ;;
    down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 0.1
done
die "node $HOST not idle after 30 s (state: ${st:-none}); see $STATE/log/"
