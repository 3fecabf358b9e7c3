#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the cluster test (tests/cluster/test_slurm.py)
# and for trying the SLURM profile by hand. Needs root and Debian's packages (installed if missing).
#
#   tests/cluster/slurm.sh start              # munged, slurmctld, slurmd; no accounting (no sacct)
#   tests/cluster/slurm.sh start accounting   # the same plus MariaDB and slurmdbd (sacct works)
#   tests/cluster/slurm.sh stop               # stops the daemons this script started, by their PIDs
#   tests/cluster/slurm.sh status
#
# The node's size comes from `slurmd -C`. Partitions: `cpu` (the default) and `gpu`, the same node,
# which announces two fake GPUs (a GRES with no device files) so that GPU-partition jobs schedule.
# `start` is idempotent: a running cluster started by this script is left as it is (started again
# only if the mode differs). It writes /etc/slurm/slurm.conf, and refuses to replace one it did not
# write. Every wait is bounded.
set -euo pipefail

MARKER="# written by scratchlm tests/cluster/slurm.sh"
STATE=${SCRATCHLM_SLURM_STATE:-/var/lib/scratchlm-slurm}
CONF=/etc/slurm/slurm.conf
FAKE_GPUS=2
MODE_FILE=$STATE/mode

die() { echo "slurm.sh: $*" >&2; exit 1; }
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not happen within ${limit}s (logs: $STATE/log)"
        sleep 0.5
    done
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    if [[ $1 == accounting ]]; then
        command -v slurmdbd >/dev/null || missing+=(slurmdbd)
        command -v mariadbd >/dev/null || missing+=(mariadb-server)
    fi
    ((${#missing[@]} == 0)) && return
    echo "slurm.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The daemons must not start as services: this script starts and stops them itself.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq "${missing[@]}" >"$STATE/log/apt.log" 2>&1 \
        || { rm -f /usr/sbin/policy-rc.d; tail -5 "$STATE/log/apt.log" >&2; die "apt-get install failed"; }
    rm -f /usr/sbin/policy-rc.d
}

write_slurm_conf() {
    local node accounting=$1
    [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF" && die "$CONF exists and was not written by this script"
    node=$(slurmd -C | head -1)   # NodeName=... CPUs=... RealMemory=...
    rm -rf "$STATE"/{ctld,spool}   # a fresh cluster: no jobs or node states from an earlier start
    mkdir -p /etc/slurm "$STATE"/{ctld,spool}
    {
        echo "$MARKER"
        echo "ClusterName=scratchlm"
        echo "SlurmctldHost=$(hostname -s)"
        echo "SlurmUser=root"
        echo "AuthType=auth/munge"
        echo "StateSaveLocation=$STATE/ctld"
        echo "SlurmdSpoolDir=$STATE/spool"
        echo "SlurmctldPidFile=$STATE/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/slurmd.pid"
        echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
        echo "SlurmdLogFile=$STATE/log/slurmd.log"
        echo "ProctrackType=proctrack/linuxproc"   # cgroups are not always writable in containers
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        echo "SchedulerType=sched/backfill"
        echo "ReturnToService=2"
        echo "MinJobAge=600"          # finished jobs stay visible to squeue for 10 minutes
        echo "MpiDefault=none"
        echo "GresTypes=gpu"
        echo "JobCompType=jobcomp/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        if [[ $accounting == accounting ]]; then
            echo "AccountingStorageType=accounting_storage/slurmdbd"
            echo "AccountingStorageHost=localhost"
        else
            echo "AccountingStorageType=accounting_storage/none"
        fi
        # slurmd -C's line minus its UpTime, plus the fake GPUs.
        echo "$node Gres=gpu:$FAKE_GPUS State=UNKNOWN" | sed 's/ UpTime=[^ ]*//'
        local name; name=$(sed 's/^NodeName=\([^ ]*\).*/\1/' <<<"$node")
        echo "PartitionName=cpu Nodes=$name Default=YES MaxTime=INFINITE State=UP"
        echo "PartitionName=gpu Nodes=$name MaxTime=INFINITE State=UP"
    } >"$CONF"
    # Fake GPUs: character devices that are /dev/null (slurmd counts GPUs by their device files).
    mkdir -p "$STATE/dev"
    echo "$MARKER" >/etc/slurm/gres.conf
    local i
    for ((i = 0; i < FAKE_GPUS; i++)); do
        [[ -c $STATE/dev/fakegpu$i ]] || mknod "$STATE/dev/fakegpu$i" c 1 3
        echo "Name=gpu File=$STATE/dev/fakegpu$i" >>/etc/slurm/gres.conf
    done
}

start_munge() {
    pid_alive "$STATE/munged.pid" && return
    mkdir -p /run/munge && chown munge:munge /run/munge
    # munged runs as its own user, as Debian's service does.
    su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid"   # log: /var/log/munge
    wait_for 10 "munged's PID file" test -s /run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid"
}

start_accounting() {
    pid_alive "$STATE/mariadb.pid" || {
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld   # MariaDB runs as mysql: its files go here
        mariadbd-safe --pid-file=/run/mysqld/scratchlm.pid >"$STATE/log/mariadb.log" 2>&1 &
        wait_for 30 "MariaDB answering" mariadb -e "select 1"
        cp /run/mysqld/scratchlm.pid "$STATE/mariadb.pid"
    }
    mariadb -e "create database if not exists slurm_acct_db;
        create user if not exists 'slurm'@'localhost' identified by 'scratchlm';
        grant all on slurm_acct_db.* to 'slurm'@'localhost';"
    cat >/etc/slurm/slurmdbd.conf <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageUser=slurm
StoragePass=scratchlm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
    pid_alive "$STATE/slurmdbd.pid" || slurmdbd
    wait_for 30 "slurmdbd answering" sacctmgr -n list cluster
    sacctmgr -i add cluster scratchlm >/dev/null 2>&1 || true
}

start() {
    local mode=${1:-plain}
    [[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts daemons)"
    [[ $mode == plain || $mode == accounting ]] || die "unknown mode '$mode' (plain or accounting)"
    mkdir -p "$STATE/log"
    if pid_alive "$STATE/slurmctld.pid" && [[ $(cat "$MODE_FILE" 2>/dev/null) == "$mode" ]]; then
        echo "slurm.sh: already running ($mode)"; return
    fi
    stop quiet
    install_packages "$mode"
    write_slurm_conf "$mode"
    start_munge
    [[ $mode == accounting ]] && start_accounting
    slurmctld
    wait_for 30 "slurmctld answering" scontrol ping
    slurmd
    wait_for 60 "the node becoming idle" bash -c "sinfo -h -o %T | grep -qx idle"
    echo "$mode" >"$MODE_FILE"
    echo "slurm.sh: running ($mode): $(sinfo -h -o '%P %c CPUs %m MB %G' | tr '\n' ';')"
}

stop() {
    local name pid
    for name in slurmd slurmctld slurmdbd mariadb munged; do
        pid_alive "$STATE/$name.pid" || continue
        pid=$(cat "$STATE/$name.pid")
        kill "$pid"
        wait_for 30 "$name stopping" bash -c "! kill -0 $pid"
        rm -f "$STATE/$name.pid"
    done
    rm -f "$MODE_FILE"
    [[ ${1:-} == quiet ]] || echo "slurm.sh: stopped"
}

status() {
    pid_alive "$STATE/slurmctld.pid" || { echo "slurm.sh: not running"; return 1; }
    echo "slurm.sh: running ($(cat "$MODE_FILE" 2>/dev/null))"
    sinfo
}

case ${1:-} in
    start) start "${2:-plain}" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start [plain|accounting] | stop | status" >&2; exit 2 ;;
esac
