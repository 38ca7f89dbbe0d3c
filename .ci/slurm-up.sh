#!/usr/bin/env bash
# A real single-node SLURM (slurmctld + slurmd + munge) on this machine, for the SLURM tests and CI.
# Idempotent: does nothing once `srun hostname` answers. Needs root (apt-get, daemons).
set -euo pipefail
if timeout 10 srun -t 1 hostname >/dev/null 2>&1; then echo "slurm: already up"; exit 0; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))  # half the RAM, in MB
CONF_DIR=/etc/slurm
mkdir -p $CONF_DIR /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
cat > $CONF_DIR/slurm.conf <<CONF
ClusterName=bench
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
MpiDefault=none
JobRequeue=1
KillWait=5
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || (munged --force 2>/dev/null || su -s /bin/sh munge -c munged)
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if timeout 10 srun -t 1 hostname >/dev/null 2>&1; then echo "slurm: up ($HOST, $CPUS CPUs)"; exit 0; fi
  scontrol update nodename=$HOST state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm: did not come up; see /var/log/slurm/" >&2
exit 1
