#!/usr/bin/env bash
# A single-node SLURM cluster for tests/slurm.rs: `start` installs Debian's slurmctld, slurmd,
# slurm-client and munge where missing (root, apt-get), writes a munge key and a minimal
# slurm.conf for this host, and starts munged, slurmctld and slurmd without systemd; `stop` stops
# them. Used by .ci/run; needs root.
set -euo pipefail
stop_all() {
    scontrol shutdown >/dev/null 2>&1 || true
    for name in slurmd slurmctld slurmscriptd; do pkill -x "$name" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
        sleep 0.5
    done
    for name in slurmd slurmctld slurmscriptd munged; do pkill -9 -x "$name" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
        pgrep -x munged >/dev/null || pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
        sleep 0.25
    done
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
}

case "${1:-}" in
start)
    # Ours alone: whatever an earlier start left running goes first.
    stop_all
    if ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
    fi
    host=$(hostname -s)
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    /usr/sbin/munged --force </dev/null >/dev/null 2>&1
    # A test cluster keeps no state between starts (a stale state directory of another
    # ClusterName would stop slurmctld).
    rm -rf /var/spool/dlsvm-slurmctld /var/spool/dlsvm-slurmd
    mkdir -p /var/spool/dlsvm-slurmctld /var/spool/dlsvm-slurmd /var/log/slurm /etc/slurm
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=dlsvm-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
StateSaveLocation=/var/spool/dlsvm-slurmctld
SlurmdSpoolDir=/var/spool/dlsvm-slurmd
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
NodeName=$host CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobRequeue=1
CONF
    slurmctld </dev/null >/dev/null 2>&1
    slurmd </dev/null >/dev/null 2>&1
    for _ in $(seq 1 30); do
        sinfo -h -o %T 2>/dev/null | grep -q idle && exit 0
        sleep 1
    done
    echo "slurm-cluster.sh: the node did not come up" >&2
    tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
    ;;
stop)
    stop_all
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
