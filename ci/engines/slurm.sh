#!/usr/bin/env bash
# Single-node SLURM for flowbatch's tests: installs (if missing), configures and starts
# munged + slurmctld + slurmd as root with no systemd, and leaves them running.
# Idempotent: re-running restarts the daemons with a fresh configuration.
# Partition `debug`; no accounting (sacct needs slurmdbd + a database): flowbatch reads
# finished jobs with `scontrol show job`, which MinJobAge=300 keeps them visible to.
# Based on shared/engines/slurm_single_node.sh. Exits non-zero, with the daemons' log
# tails, if the node is not idle in time.
set -euo pipefail
LOG=${LOG:-/tmp/flowbatch-slurm}
mkdir -p "$LOG"

export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] \
    || apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >"$LOG/apt.log" 2>&1
fi

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory must be <= what slurmd detects (MB): take 90% of MemTotal.
MEM=$(awk '/MemTotal/{printf "%d", $2/1024*0.9}' /proc/meminfo)
SPOOL=/var/spool/slurmctld; SDSPOOL=/var/spool/slurmd
mkdir -p /etc/slurm "$SPOOL" "$SDSPOOL" /var/log/slurm /run/slurm
chown slurm:slurm "$SPOOL" /var/log/slurm /run/slurm 2>/dev/null || true

cat >/etc/slurm/slurm.conf <<EOF
ClusterName=flowbatch
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=${SPOOL}
SlurmdSpoolDir=${SDSPOOL}
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# The default scheduling is lazy (3 s batch delay, 60 s main loop); these make a job
# start about 1 s after it is submitted.
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
# Keep finished jobs visible to squeue/scontrol for 5 minutes.
MinJobAge=300
MaxArraySize=10001
MaxJobCount=50000
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF

if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 755 /run/munge

stop_pidfile() {
  local pf=$1 p
  [ -s "$pf" ] || return 0
  p=$(cat "$pf"); kill "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true; rm -f "$pf"
}
# A clean slate from a previous start (only the daemons this script starts, by pid file).
for pf in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
  stop_pidfile "$pf"
done

runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
munge -n | unmunge >/dev/null
# -c: clear saved state (fresh job ids); -i: ignore errors in state files.
/usr/sbin/slurmctld -i -c
/usr/sbin/slurmd
st=""
for _ in $(seq 150); do
  st=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  case "$st" in idle*) break;; esac
  sleep 0.2
done
if [ "${st%%[*~#]}" != idle ]; then
  echo "slurm: node is not idle (state: '${st}')" >&2
  tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  exit 1
fi
echo "slurm: node ${HOST} idle (partition debug, ${CPUS} CPUs, ${MEM} MiB)"
