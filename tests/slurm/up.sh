#!/usr/bin/env bash
# Starts a single-node Slurm on this machine for the cluster tests: munge, slurmctld and
# slurmd, with two fake GPUs as GRES (character devices with /dev/null's numbers). Installs
# Debian's slurm-wlm and munge first if they are missing. Prints `export SLURM_CONF=...`;
# tests/slurm/down.sh stops it all. Everything lives under $SLURM_STATE (default
# target/slurm), so a real cluster's /etc/slurm is never touched.
set -euo pipefail
state=$(realpath -m "${SLURM_STATE:-target/slurm}")
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "slurm-wlm and munge are missing and installing them needs root" >&2; exit 1; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
mkdir -p "$state"/{spool,ctld,log,munge,run}
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
for i in 0 1; do
  [ -e "$state/gpu$i" ] || mknod "$state/gpu$i" c 1 3
done
cat > "$state/slurm.conf" <<CONF
ClusterName=sweeptest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
MinJobAge=600
KillWait=5
SchedulerParameters=sched_interval=1
MessageTimeout=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
cat > "$state/gres.conf" <<CONF
AutoDetect=off
NodeName=$host Name=gpu File=$state/gpu[0-1]
CONF
export SLURM_CONF="$state/slurm.conf"
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --force
  munged --force 2>/dev/null
fi
# Our own daemons from an earlier start (never a real cluster's: only the pid files here).
for daemon in slurmd slurmctld; do
  pid_file="$state/run/$daemon.pid"
  if [ -s "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null; then sleep 1; fi
done
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm did not come up; logs in $state/log" >&2
sinfo >&2 || true
tail -20 "$state"/log/*.log >&2
exit 1
