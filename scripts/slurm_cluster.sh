#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages, started without systemd: what CI
# runs lrexp's cluster tests on, and a way to try `hydra/launcher=submitit_slurm` locally.
#
#   bash scripts/slurm_cluster.sh          # install if needed, configure, start; then: sinfo, srun hostname
#   bash scripts/slurm_cluster.sh stop     # stop the daemons
#
# With job accounting (slurmdbd on a local MariaDB), as real clusters have it: submitit asks sacct for
# the state of a job that ended without writing its result (cancelled, killed by the OS). Without
# accounting sacct fails, submitit warns "Bypassing sacct error" at every poll, and it can never learn
# that such a job ended, so the sweep waits forever.
#
# Idempotent: run it again and it keeps what is already running. Needs root (packages, daemons). Fails
# with one line saying what is missing.
set -euo pipefail

fail() { echo "slurm_cluster: $*" >&2; exit 1; }
log() { echo "slurm_cluster: $*"; }

if [ "${1:-}" = "stop" ]; then
  for daemon in slurmd slurmctld slurmdbd mariadbd munged; do pkill -x "$daemon" || true; done
  for daemon in slurmd slurmctld slurmdbd mariadbd munged; do  # gone, so that a start right after does not see them
    for _ in $(seq 40); do pgrep -x "$daemon" >/dev/null || break; sleep 0.25; done
  done
  log "stopped"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail "needs root: it installs slurm-wlm, slurmdbd, munge and mariadb-server and starts their daemons"

packages="slurm-wlm slurmdbd munge mariadb-server"
for cmd in slurmctld slurmdbd munged mariadbd; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || fail "$packages are not installed and there is no apt-get to install them"
    log "installing $packages"
    apt-get update -qq >/dev/null || fail "apt-get update failed (no access to Debian's package registry?)"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null || fail "could not install $packages"
    break
  fi
done

# The node's own name must resolve to itself (containers often lack the entry).
host=$(hostname -s)
getent hosts "$host" >/dev/null 2>&1 || echo "127.0.0.1 $host" >> /etc/hosts
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# munge: the credential daemon every SLURM daemon and command authenticates through.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged --force" || fail "munged did not start (see /var/log/munge/munged.log)"
for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
munge -n | unmunge >/dev/null 2>&1 || fail "munge does not authenticate (see /var/log/munge/munged.log)"

# One node with this machine's cores and most of its memory, one partition, accounting through slurmdbd.
# Written first: every SLURM command reads it (sacctmgr below included; without it they look for a
# config server in DNS and fail).
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
conf=$(printf '%s\n' \
  "ClusterName=lrexp" "SlurmctldHost=$host" "AuthType=auth/munge" "CredType=cred/munge" "SlurmUser=root" \
  "ProctrackType=proctrack/linuxproc" "TaskPlugin=task/none" "SelectType=select/cons_tres" "SelectTypeParameters=CR_Core" \
  "MpiDefault=none" "AccountingStorageType=accounting_storage/slurmdbd" "AccountingStorageHost=localhost" \
  "JobAcctGatherType=jobacct_gather/none" "ReturnToService=2" "JobRequeue=1" "KillWait=10" \
  "StateSaveLocation=/var/spool/slurmctld" "SlurmdSpoolDir=/var/spool/slurmd" \
  "SlurmctldPidFile=/run/slurmctld.pid" "SlurmdPidFile=/run/slurmd.pid" \
  "SlurmctldLogFile=/var/log/slurm/slurmctld.log" "SlurmdLogFile=/var/log/slurm/slurmd.log" \
  "NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN" \
  "PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP")
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  echo "$conf" > /etc/slurm/slurm.conf
  pkill -x slurmd || true
  pkill -x slurmctld || true
  sleep 1
fi

# Job accounting: MariaDB on its local socket, slurmdbd in front of it.
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if ! mariadb -e "select 1" >/dev/null 2>&1; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null || fail "could not create MariaDB's data directory"
  (mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 >/var/log/slurm/mariadbd.log 2>&1 &)
  for _ in $(seq 60); do mariadb -e "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb -e "select 1" >/dev/null 2>&1 || fail "MariaDB did not start (see /var/log/slurm/mariadbd.log)"
fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" \
  || fail "could not create the accounting database user"
printf '%s\n' \
  "AuthType=auth/munge" "DbdHost=localhost" "SlurmUser=root" "StorageType=accounting_storage/mysql" "StorageHost=localhost" \
  "StorageUser=slurm" "StoragePass=slurm" "StorageLoc=slurm_acct_db" "LogFile=/var/log/slurm/slurmdbd.log" "PidFile=/run/slurmdbd.pid" \
  > /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
pgrep -x slurmdbd >/dev/null || slurmdbd || fail "slurmdbd did not start (see /var/log/slurm/slurmdbd.log)"
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw lrexp || sacctmgr -i add cluster lrexp >/dev/null \
  || fail "could not register the cluster with slurmdbd (see /var/log/slurm/slurmdbd.log)"

pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"

state=""
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null || true)
  case "$state" in
    idle*|mix*|alloc*) break ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
case "$state" in idle*|mix*|alloc*) ;; *) fail "the node is '$state', not idle, after 60 s (see /var/log/slurm)" ;; esac
timeout 60 srun --time=1 hostname >/dev/null || fail "srun hostname did not answer (see /var/log/slurm)"
sacct -n -o JobID >/dev/null 2>&1 || fail "sacct does not answer: job accounting is not working (see /var/log/slurm/slurmdbd.log)"
log "up: node $host, $cpus CPUs, ${mem_mb} MB, partition debug, with accounting ($(sinfo --version))"
