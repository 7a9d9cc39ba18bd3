#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, so the workflow can be run through
# snakemake-executor-plugin-slurm end to end (tests/test_slurm.py does, or try it by hand):
#
#   cluster/local_slurm.sh start        # prints the `export SLURM_CONF=... PATH=...` line
#   eval "$(cluster/local_slurm.sh env)"
#   .venv/bin/snakemake --executor slurm --profile <a profile with slurm_partition: local> ...
#   cluster/local_slurm.sh status
#   cluster/local_slurm.sh stop
#
# What runs, all from one state directory ($LOCAL_SLURM_DIR, nothing is written to /etc):
#   munged      its own key and socket, so it never touches a system munge
#   mariadbd    the accounting database, on 127.0.0.1 only
#   slurmdbd    accounting daemon: the plugin polls job states with `sacct`, and sacct in Slurm
#               22.05 refuses to answer without slurmdbd ("Slurm accounting storage is
#               disabled" with accounting_storage/none; jobcomp/filetxt is only read by
#               `sacct --completion`, which the plugin does not pass)
#   slurmctld, slurmd  one node (this host, as `slurmd -C` sees it) in one partition
#
# No cgroups and no systemd are needed: processes are tracked by their parent ids
# (proctrack/linuxproc), tasks are not bound (task/none) and usage is sampled from /proc
# (jobacct_gather/linux). Containers often lack a writable cgroup tree or systemd, and those
# are what the cgroup plugins require.
#
# Missing packages (Debian/Ubuntu: slurm-wlm munge slurmdbd mariadb-server) are installed
# with apt-get when running as root; otherwise the script stops with exit code 2 and says
# what to install. On a host with systemd, installing them may also enable their system
# services; this script uses none of those (other sockets, ports and files).
#
# Settings (environment):
#   LOCAL_SLURM_DIR        state directory   (default: ${TMPDIR:-/tmp}/pipeline-local-slurm);
#                          every folder above it must be traversable by all users (munged
#                          checks the path to its socket)
#   LOCAL_SLURM_PORT       slurmctld port; slurmd, slurmdbd and mariadbd use the next three
#                          (default: 6817)
#   LOCAL_SLURM_PARTITION  partition name    (default: local)
#
# Exit codes: 0 ok, 1 a daemon failed (its log is printed), 2 packages missing and not
# installable, 3 `status`: not everything is running.

set -euo pipefail

STATE=${LOCAL_SLURM_DIR:-${TMPDIR:-/tmp}/pipeline-local-slurm}
PORT=${LOCAL_SLURM_PORT:-6817}
PARTITION=${LOCAL_SLURM_PARTITION:-local}
CLUSTER=pipelinelocal
DB_PASS=local-slurm-only # the database listens on 127.0.0.1 only and holds nothing secret

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
MUNGE_SOCKET=$RUN/munge/munge.socket.2
export SLURM_CONF=$ETC/slurm.conf

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
COMMANDS=(munged slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo squeue scancel
  mariadbd mariadb-install-db mariadb)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd) # start order; stop goes backwards

die() {
  echo "local_slurm: $*" >&2
  exit 1
}

pidfile() {
  case $1 in
  munged) echo "$RUN/munge/munged.pid" ;;
  *) echo "$RUN/$1.pid" ;;
  esac
}

# The pid of a running daemon, or nothing. The process name is checked too, so a stale pid
# file whose number now belongs to another process is not mistaken for the daemon.
daemon_pid() {
  local file pid
  file=$(pidfile "$1")
  [[ -s $file ]] || return 0
  pid=$(<"$file")
  if [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$1" ]]; then
    echo "$pid"
  fi
}

running() { [[ -n $(daemon_pid "$1") ]]; }

no_jobs() { [[ -z $(squeue -h -o %A 2>/dev/null) ]]; }

show_log() {
  echo "---- last lines of $1" >&2
  tail -n 30 "$1" >&2 || true
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2 i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "local_slurm: timed out after ${seconds}s waiting for $what" >&2
  return 1
}

ensure_packages() {
  local missing=()
  for c in "${COMMANDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "local_slurm: missing commands: ${missing[*]}. Install the packages" \
      "${PACKAGES[*]} (e.g. sudo apt-get install ${PACKAGES[*]}) or run this as root." >&2
    exit 2
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "local_slurm: missing commands: ${missing[*]} and no apt-get to install" \
      "${PACKAGES[*]} with." >&2
    exit 2
  fi
  mkdir -p "$LOG"
  echo "local_slurm: installing ${PACKAGES[*]} (log: $LOG/apt.log)" >&2
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
  if ! "${apt[@]}" "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1; then
    # A fresh container often has no package lists yet.
    if ! { apt-get update && "${apt[@]}" "${PACKAGES[@]}"; } >>"$LOG/apt.log" 2>&1; then
      show_log "$LOG/apt.log"
      echo "local_slurm: apt-get could not install ${PACKAGES[*]}" >&2
      exit 2
    fi
  fi
}

write_configs() {
  mkdir -p "$ETC" "$RUN/munge" "$LOG" "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/db"
  # munged insists that everyone may traverse its socket directory.
  chmod 755 "$STATE" "$RUN" "$RUN/munge"
  local host node
  host=$(hostname -s)
  # The node exactly as slurmd detects it (CPUs, sockets, cores, memory), so it registers
  # without being drained for a mismatch.
  node=$(slurmd -C | head -n 1)
  [[ $node == NodeName=* ]] || die "slurmd -C printed no node line: $node"
  node=$(echo "$node" | sed -E "s/^NodeName=[^ ]+/NodeName=$host/")

  cat >"$ETC/slurm.conf" <<EOF
# Written by cluster/local_slurm.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
MailProg=/bin/true
# No cgroups, no systemd: see the header of cluster/local_slurm.sh.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# Accounting through slurmdbd, so that sacct (which the SLURM executor plugin polls) works.
# AccountingStoragePass names the munge socket for talking to slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$MUNGE_SOCKET
# Keep job comments: the plugin's comment names the rule (sacct -o Comment).
AccountingStoreFlags=job_comment
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=300
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  # Read only when a cgroup plugin is enabled, which this cluster does not do (see above);
  # written so that switching to proctrack/cgroup or task/cgroup starts from sane settings.
  cat >"$ETC/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
EOF

  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=$(id -un)
PidFile=$(pidfile slurmdbd)
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf" # slurmdbd refuses a config others can read

  # snakemake-executor-plugin-slurm-jobstep (0.6.1) removes every SLURM_* variable, SLURM_CONF
  # included, from the environment of the srun it runs inside each job (the plugin's issue
  # #164), so that srun would look for /etc/slurm/slurm.conf. This srun, first on PATH (see
  # `env`), puts the config back; a cluster configured in /etc needs none of this.
  local real_srun
  real_srun=$(PATH=${PATH//$STATE\/bin:/} command -v srun)
  mkdir -p "$STATE/bin"
  cat >"$STATE/bin/srun" <<SRUN
#!/bin/sh
SLURM_CONF=\${SLURM_CONF:-$SLURM_CONF} exec $real_srun "\$@"
SRUN
  chmod 755 "$STATE/bin/srun"

  if [[ ! -s $ETC/munge.key ]]; then
    dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "$ETC/munge.key"
}

sql() { mariadb --no-defaults --socket="$RUN/mariadbd.sock" -u root "$@"; }

start_munged() {
  munged --socket="$MUNGE_SOCKET" --key-file="$ETC/munge.key" --pid-file="$(pidfile munged)" \
    --seed-file="$RUN/munge/munged.seed" --log-file="$LOG/munged.log" ||
    { show_log "$LOG/munged.log"; die "munged did not start"; }
}

start_mariadbd() {
  if [[ ! -d $STATE/db/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$STATE/db" --user="$(id -un)" \
      --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 ||
      { show_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  # mariadbd stays in the foreground; setsid detaches it from this shell and its signals.
  setsid mariadbd --no-defaults --datadir="$STATE/db" --user="$(id -un)" \
    --socket="$RUN/mariadbd.sock" --pid-file="$(pidfile mariadbd)" \
    --port=$((PORT + 3)) --bind-address=127.0.0.1 --skip-name-resolve \
    --innodb-buffer-pool-size=64M --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
  wait_for 60 "mariadbd" sql -e "select 1" || { show_log "$LOG/mariadb.log"; exit 1; }
  sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm_daemon() { # start_slurm_daemon NAME [ARGS...]; the daemons fork themselves
  local name=$1
  shift
  "$name" "$@" || { show_log "$LOG/$name.log"; die "$name did not start"; }
  wait_for 30 "$name" running "$name" || { show_log "$LOG/$name.log"; exit 1; }
}

node_idle() {
  [[ $(sinfo -h -p "$PARTITION" -o %t 2>/dev/null) == idle ]]
}

cmd_start() {
  if [[ $(id -u) != 0 ]]; then
    echo "local_slurm: start needs root: slurmd launches every job as its user, which only" \
      "root can do (and missing packages are installed with apt-get)" >&2
    exit 2
  fi
  ensure_packages
  write_configs
  [[ -n $(daemon_pid munged) ]] || start_munged
  [[ -n $(daemon_pid mariadbd) ]] || start_mariadbd
  if [[ -z $(daemon_pid slurmdbd) ]]; then
    start_slurm_daemon slurmdbd
    wait_for 60 "slurmdbd to answer" sacctmgr -n list cluster ||
      { show_log "$LOG/slurmdbd.log"; exit 1; }
  fi
  if [[ -z $(sacctmgr -n -P list cluster format=cluster | grep -x "$CLUSTER") ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  [[ -n $(daemon_pid slurmctld) ]] || start_slurm_daemon slurmctld
  [[ -n $(daemon_pid slurmd) ]] || start_slurm_daemon slurmd
  if ! wait_for 60 "the node to be idle in partition $PARTITION" node_idle; then
    sinfo -N -l >&2 || true
    show_log "$LOG/slurmctld.log"
    show_log "$LOG/slurmd.log"
    exit 1
  fi
  echo "local_slurm: cluster $CLUSTER up, partition $PARTITION (state: $STATE)" >&2
  print_env
}

print_env() {
  echo "export SLURM_CONF=$SLURM_CONF PATH=$STATE/bin:\$PATH"
}

stop_daemon() {
  local name=$1 pid i
  pid=$(daemon_pid "$name")
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.5
  done
  if [[ -d /proc/$pid ]]; then
    echo "local_slurm: $name (pid $pid) ignored SIGTERM for 20 s, killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

cmd_stop() {
  if [[ -n $(daemon_pid slurmctld) ]]; then
    # Jobs first, so no slurmstepd outlives its slurmd.
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      wait_for 30 "jobs to end" no_jobs || true
    fi
  fi
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[i]}"
  done
  echo "local_slurm: stopped (state kept in $STATE)" >&2
}

cmd_status() {
  local all=0 pid
  for name in "${DAEMONS[@]}"; do
    pid=$(daemon_pid "$name")
    if [[ -n $pid ]]; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      all=3
    fi
  done
  if [[ -n $(daemon_pid slurmctld) ]]; then
    sinfo || true
  fi
  return $all
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) print_env ;;
*)
  echo "usage: $0 {start|stop|status|env}   (state in $STATE)" >&2
  exit 64
  ;;
esac
