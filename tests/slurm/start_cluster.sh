#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine for the workflow's SLURM tests.
#
# Idempotent: returns at once when the node already reports idle. Runs as root, needs Debian's
# `slurmctld slurmd slurm-client munge` (apt-get install -y --no-install-recommends ...), and
# writes /etc/slurm/slurm.conf and gres.conf only where they are absent or were written by this
# script (never over a site's configuration). No systemd, no cgroups, no accounting database:
# linuxproc process tracking, one partition `debug`, and a fake GPU (gres gpu:1 on /dev/null) so
# that jobs asking for `--gpus=1` are scheduled. Exit status: 0 ready, 3 cannot run here (the
# reason on stderr), 1 the daemons did not come up (their log tails on stderr).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES=$CONF_DIR/gres.conf
MARK="# tailstudy test cluster"
PARTITION=debug

cannot() { echo "cannot start the test cluster: $*" >&2; exit 3; }

[ "$(id -u)" = 0 ] || cannot "needs root (daemons, /etc/slurm)"
export PATH=$PATH:/usr/sbin:/sbin
for cmd in slurmctld slurmd munged munge sinfo sbatch squeue scontrol; do
  command -v "$cmd" >/dev/null \
    || cannot "$cmd not found (apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge)"
done
for f in "$CONF" "$GRES"; do
  if [ -e "$f" ] && ! head -n1 "$f" | grep -q "^$MARK"; then
    cannot "$f exists and was not written by this script; not touching a site's SLURM"
  fi
done

node=$(hostname -s)
node_state() { sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n1 | tr -d '~#!%$@^-'; }
case "$(node_state)" in idle | mixed | allocated | completing) exit 0 ;; esac

# ---- configuration (the node line comes from slurmd -C: this machine's CPUs and memory)
hw=$(slurmd -C | head -n1)
[[ $hw == NodeName=* ]] || cannot "slurmd -C gave no node description: $hw"
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF.new" <<CONF
$MARK (written by tests/slurm/start_cluster.sh; safe to delete)
ClusterName=tailstudy
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no systemd, no cgroups: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
# no slurmdbd: sacct cannot work; clients poll with squeue
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# share the node by cores and memory; jobs without --mem get 1 GB per CPU, not the whole node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue/scontrol for 5 minutes (>= 3x the status-check delay)
MinJobAge=300
ReturnToService=2
GresTypes=gpu
$hw NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.new" "$CONF"
printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\n' "$MARK" "$node" > "$GRES"

# ---- daemons (each forks and exits 0 even when it fails: readiness is what sinfo reports)
if ! munge -n </dev/null >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- munged || cannot "munged did not start"
fi
scontrol ping >/dev/null 2>&1 || slurmctld
sleep 1
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
  state=$(node_state)
  case "$state" in
    idle | mixed | allocated) exit 0 ;;
    down | drained | draining | drain) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "the test cluster did not come up (node $node: '${state:-no answer}')" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
