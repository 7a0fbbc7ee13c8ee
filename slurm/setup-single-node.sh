#!/usr/bin/env bash
# Install and start a single-node Slurm (slurmctld + slurmd + munge) on a
# Debian/Ubuntu machine WITHOUT systemd.  Used by CI (.ci/run) and by the
# pytest fixture in tests/slurm/conftest.py.
#
#   sudo bash slurm/setup-single-node.sh
#
# Idempotent: packages are installed only when missing, the munge key and
# slurm.conf are written only when missing/different, and daemons that are
# already running are left alone (a changed slurm.conf is applied with
# `scontrol reconfigure`).  At the end it waits (bounded) for the node to be
# usable and exits non-zero with a diagnostic otherwise.
#
# Environment knobs:
#   SLURM_SETUP_WAIT   seconds to wait for the node to become usable (60)
#   SLURM_NODE_CPUS    CPUs advertised for the node (16; oversubscribes the
#                      real cores on purpose, SlurmdParameters=config_overrides)
#   SLURM_NODE_MEM_MB  RealMemory advertised for the node (16000)
#   SLURM_SETUP_FORCE  1: replace an /etc/slurm/slurm.conf this script did
#                      not write (refused by default)
set -euo pipefail

WAIT_S=${SLURM_SETUP_WAIT:-60}
NODE_CPUS=${SLURM_NODE_CPUS:-16}
NODE_MEM=${SLURM_NODE_MEM_MB:-16000}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
MARKER="Written by lepton_hpc slurm/setup-single-node.sh"

log() { echo "[slurm-setup] $*"; }
die() { echo "[slurm-setup] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

H=$(hostname -s)
[ -n "$H" ] || die "hostname -s returned nothing"

# ---------------------------------------------------------------- packages
need_pkgs=()
command -v slurmctld >/dev/null 2>&1 || need_pkgs+=(slurmctld)
command -v slurmd    >/dev/null 2>&1 || need_pkgs+=(slurmd)
command -v sbatch    >/dev/null 2>&1 || need_pkgs+=(slurm-client)
{ command -v munged && command -v mungekey; } >/dev/null 2>&1 || need_pkgs+=(munge)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${need_pkgs[*]} and no apt-get to install them"
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq || die "apt-get update failed"
    # The packages' postinst scripts try to start the daemons; without
    # systemd that fails harmlessly.  We start them ourselves below.
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null \
        || die "apt-get install slurmctld slurmd slurm-client munge failed"
fi
id slurm >/dev/null 2>&1 || die "user 'slurm' does not exist after installing slurm packages"
id munge >/dev/null 2>&1 || die "user 'munge' does not exist after installing munge"

# ---------------------------------------------------------------- munge
install -d -o munge -g munge -m 0700 /etc/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# A process of that exact name that is not a zombie (pgrep also sees zombies).
# shellcheck disable=SC2009
running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    log "starting munged"
    if [ -x /etc/init.d/munge ]; then
        service munge start >/dev/null 2>&1 || /etc/init.d/munge start || true
    fi
    if ! running munged; then
        runuser -u munge -- /usr/sbin/munged || true
    fi
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.2
    done
    munge -n | unmunge >/dev/null || die "munge does not work (munge -n | unmunge failed); see /var/log/munge/munged.log"
fi

# ---------------------------------------------------------------- slurm.conf
install -d -m 0755 "$CONF_DIR"
install -d -o slurm -g slurm -m 0755 "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
chown -R slurm:slurm "$STATE_DIR" "$LOG_DIR"

new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# $MARKER -- single-node CI cluster.
ClusterName=ci
SlurmctldHost=$H
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=pmi2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# fast tests: short grace between SIGTERM and SIGKILL, keep finished jobs
# visible to 'scontrol show job' for 10 minutes (there is no accounting).
KillWait=5
MinJobAge=600
InactiveLimit=0
MailProg=/bin/true
NodeName=$H CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

if [ -f "$CONF" ] && ! grep -q "$MARKER" "$CONF" && [ "${SLURM_SETUP_FORCE:-0}" != 1 ]; then
    die "$CONF exists and was not written by this script (a real cluster?); refusing to replace it. Set SLURM_SETUP_FORCE=1 to overwrite it (a copy is kept as $CONF.orig)"
fi
if [ -f "$CONF" ] && ! grep -q "$MARKER" "$CONF"; then
    cp -p "$CONF" "$CONF.orig"
fi

conf_changed=0
if [ ! -f "$CONF" ] || ! cmp -s "$new_conf" "$CONF"; then
    log "writing $CONF"
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
fi

# ---------------------------------------------------------------- daemons
ctld_running() { running slurmctld; }
slurmd_running() { running slurmd; }

if ctld_running; then
    log "slurmctld already running"
    if [ "$conf_changed" = 1 ]; then
        log "slurm.conf changed: scontrol reconfigure"
        scontrol reconfigure || log "warning: scontrol reconfigure failed"
    fi
else
    log "starting slurmctld"
    # -c: start from a clean state (no stale jobs/nodes from older configs).
    slurmctld -c || die "slurmctld failed to start; see $LOG_DIR/slurmctld.log"
fi

if slurmd_running; then
    log "slurmd already running"
else
    log "starting slurmd"
    slurmd || die "slurmd failed to start; see $LOG_DIR/slurmd.log"
fi

# ---------------------------------------------------------------- wait
# A usable node is idle, or busy (mix/alloc/completing) when jobs already run
# on a re-run.  A trailing '*' means "not responding".
state=""
deadline=$((SECONDS + WAIT_S))
resumed=0
while :; do
    state=$(sinfo -h -n "$H" -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc|comp) break ;;
        down|drain|drng|fail|failg)
            # e.g. "Node unexpectedly rebooted" from a previous incarnation
            if [ "$resumed" = 0 ]; then
                log "node state '$state': trying State=RESUME"
                scontrol update NodeName="$H" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        {
            echo "[slurm-setup] ERROR: node $H not usable after ${WAIT_S}s (sinfo state: '${state:-no answer}')"
            scontrol show node "$H" 2>&1 | sed 's/^/    /' || true
            echo "---- tail $LOG_DIR/slurmctld.log"; tail -n 20 "$LOG_DIR/slurmctld.log" 2>/dev/null || true
            echo "---- tail $LOG_DIR/slurmd.log";    tail -n 20 "$LOG_DIR/slurmd.log" 2>/dev/null || true
        } >&2
        exit 1
    fi
    sleep 0.5
done
log "node $H is $state; Slurm is ready ($(sinfo --version 2>/dev/null))"
