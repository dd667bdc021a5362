#!/usr/bin/env bash
# A single-node Slurm cluster for tests/cluster/test_slurm_cluster.py, from Debian's packages, as root,
# without systemd (CI containers and VMs have none).
#
#   .ci/slurm.sh install   apt-get the packages (skipped when they are there)
#   .ci/slurm.sh up        install, write the configuration, start the daemons, wait for the node
#   .ci/slurm.sh down      stop the daemons (slurmd first), keep the packages and the state
#   .ci/slurm.sh status    what runs, and the node as Slurm sees it
#
# The cluster is named labreport-ci; the test runs only against a cluster of that name, so it never
# submits to a real one. `up` refuses to overwrite an /etc/slurm/slurm.conf it did not write.
# Accounting (slurmdbd + MariaDB) is not optional: submitit reads job states with sacct, and
# without accounting it waits forever on a failed job.
#
# Exit codes: 0 ok, 1 could not install or start (the reason is on stderr), 2 usage.
set -euo pipefail

CLUSTER=labreport-ci
MARK="# written by labreport .ci/slurm.sh"
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
RUN=/run/slurm
LOG=/var/log/slurm
STATE=/var/lib/slurm
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
WAIT_S=30  # each daemon's readiness probe; all of them start in ~5 s on 2 cores

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }  # PIDFILE: its daemon is alive
say() { echo "slurm.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# `timeout`: each probe has its own limit, so a daemon that never answers fails `up` instead of hanging it
wait_for() {  # DESCRIPTION COMMAND...
    local what=$1; shift
    timeout "$WAIT_S" bash -c "until $* >/dev/null 2>&1; do sleep 0.2; done" \
        || die "$what did not come up within $WAIT_S s (logs: $LOG/, /var/log/munge/, /var/log/mysql*)"
}

install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "needs root to install ${missing[*]}"
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
    say "installing ${missing[*]}"
    # a policy-rc.d that says no keeps the packages' init scripts from starting the daemons (slurmctld
    # has no configuration yet): `up` starts them. Docker images ship one; elsewhere, one for the install.
    local policy=/usr/sbin/policy-rc.d own=""
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && own=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local ok=1
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/slurm-apt.log 2>&1 || ok=""
    [ -z "$own" ] || rm -f $policy
    [ -n "$ok" ] || die "apt-get install failed (see /tmp/slurm-apt.log): $(tail -n 1 /tmp/slurm-apt.log)"
}

write_config() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: not touching a real cluster's configuration"
    fi
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))  # MiB; a GiB for the OS and the daemons
    mkdir -p /etc/slurm "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd"
    chown slurm:slurm "$RUN" "$LOG" "$STATE/slurmctld"
    cat >"$CONF" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
# a requeued job may start again only once its old credentials expired: 10 s, not the default 120 s
AuthInfo=cred_expire=10
# no cgroups (containers rarely delegate them): processes tracked by parent pid, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# the scheduler looks at pending jobs every 5 s (defaults: 60 s, backfill 30 s): a requeued task
# starts once its BeginTime passes instead of at the next event or minute
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmdbd refuses a configuration file readable by others (it could hold a password; this one does not)
    cat >"$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$DBD_CONF"
    chmod 600 "$DBD_CONF"
}

start_munge() {
    running "$MUNGE_PID" && return 0
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create && chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged
    wait_for munged "munge -n | unmunge"
}

start_mariadb() {
    if ! running "$MARIADB_PID"; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        # the socket only: nothing outside this machine talks to the accounting database
        (/usr/sbin/mariadbd --user=mysql --skip-networking --pid-file="$MARIADB_PID" >/var/log/slurm/mariadb.log 2>&1 &)
        wait_for mariadbd "mariadb -u root -e 'select 1'"
    fi
    # slurmdbd (running as the slurm user) logs in through the socket as that user: no password anywhere
    mariadb -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurm() {
    running "$RUN/slurmdbd.pid" || /usr/sbin/slurmdbd
    wait_for slurmdbd "sacctmgr -n list cluster"
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    running "$RUN/slurmctld.pid" || /usr/sbin/slurmctld
    wait_for slurmctld "scontrol ping | grep -q UP"
    running "$RUN/slurmd.pid" || /usr/sbin/slurmd
    # the node registers, then goes idle (ReturnToService=2 brings back a node left down by a crash)
    wait_for "the node" "sinfo -h -N -o %T | grep -qx idle"
}

up() {
    [ "$(id -u)" -eq 0 ] || die "needs root (it starts munged, mariadbd and the Slurm daemons)"
    install
    write_config
    start_munge
    start_mariadb
    start_slurm
    say "up: cluster $CLUSTER, node $(hostname -s), $(nproc) CPUs, partition ci (logs in $LOG/)"
}

stop() {  # PIDFILE: TERM the daemon it names, then wait up to 10 s (KILL after that)
    local pid
    running "$1" || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    timeout 10 bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.2; done" || kill -9 "$pid" 2>/dev/null || true
}

down() {
    # slurmd first: with the controller gone it would keep retrying; the database last, after its client
    stop "$RUN/slurmd.pid"
    stop "$RUN/slurmctld.pid"
    stop "$RUN/slurmdbd.pid"
    stop "$MARIADB_PID"
    stop "$MUNGE_PID"
    say "down"
}

status() {
    local d
    for d in "$MUNGE_PID" "$MARIADB_PID" "$RUN/slurmdbd.pid" "$RUN/slurmctld.pid" "$RUN/slurmd.pid"; do
        printf '%-10s %s\n' "$(basename "$d" .pid)" "$(running "$d" && echo running || echo stopped)"
    done
    sinfo -N 2>/dev/null || true
}

case "${1:-}" in
    install) install ;;
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
