#!/usr/bin/env bash
# The Debian packages `postflight` and `postflight-probe`, end to end on this machine:
# build them, lint them, install them, check what they installed, run the installed
# collector as the service user, purge them. Called by tests/run (so CI runs it); alone:
#
#   tests/packages.sh
#
# Needs root or sudo (dpkg, runuser, setpriv) and the tools tests/run installs. Idempotent:
# a leftover install from an interrupted run is purged first, and the release build reuses
# the target directory. With systemd as PID 1 the installed unit is started by systemctl;
# without (a container), the unit's ExecStart runs by hand with its User, Group,
# WorkingDirectory and EnvironmentFile.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target_dir/debian"
unit_dir=/usr/lib/systemd/system
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log() { echo "tests/packages.sh: $*"; }
fail() { echo "tests/packages.sh: FAILED: $*" >&2; exit 1; }

# dpkg and the collector's port are machine-wide: one run at a time.
exec 9>/tmp/postflight-packages.lock
flock 9

# --- tools --------------------------------------------------------------------------
# tests/run installs them (idempotently): cargo-deb builds the .deb files from
# [package.metadata.deb]; lintian checks them against Debian policy; systemd provides
# systemd-analyze (installing it does not make it PID 1); adduser is what the packages'
# postinst uses; curl asks /readyz.
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is missing: tests/run installs it"
for tool in lintian systemd-analyze adduser curl setpriv; do
    command -v "$tool" >/dev/null || fail "$tool is missing: tests/run installs it"
done

# --- build --------------------------------------------------------------------------
# One release build of both binaries; `cargo deb --no-build` only packages them.
log "cargo build --release (postflight, postflight-probe)"
cargo build --release --locked --quiet -p postflight-collector -p postflight-probe --bins
mkdir -p "$out"
rm -f "$out"/postflight_*.deb "$out"/postflight-probe_*.deb
collector_deb="$(cargo deb --no-build --quiet -p postflight-collector --output "$out" | tail -n 1)"
probe_deb="$(cargo deb --no-build --quiet -p postflight-probe --output "$out" | tail -n 1)"
[ -f "$collector_deb" ] && [ -f "$probe_deb" ] || fail "cargo deb wrote no package"
log "built $(basename "$collector_deb") $(basename "$probe_deb")"

# --- lint ---------------------------------------------------------------------------
# Any lintian error fails the run; warnings are printed for the reader. The overrides
# are shipped in the packages (docker/deb/lintian-overrides), each with its reason.
log "lintian"
lintian --fail-on error \
    "$collector_deb" "$probe_deb"

# The collector as its unit starts it, without systemd: ExecStart, User, Group,
# WorkingDirectory, EnvironmentFile. setpriv execs (no fork), so $! is the collector.
# If something else holds the shipped config's port here, a copy of the config listens
# on another one.
start_by_hand() {
    local workdir env_file exec_start=() environment=()
    read -r -a exec_start <<<"$(unit_value postflight.service ExecStart)"
    workdir="$(unit_value postflight.service WorkingDirectory)"
    env_file="$(unit_value postflight.service EnvironmentFile)"
    mapfile -t environment < <($sudo grep -Ev '^[[:space:]]*(#|$)' "${env_file#-}" || true)
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        port=$((20000 + RANDOM % 10000))
        log "port ${listen##*:} is in use here: running the installed config on $port"
        sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" /etc/postflight/collector.toml \
            | $sudo tee "$workdir/collector-test.toml" >/dev/null
        $sudo chown "root:$group" "$workdir/collector-test.toml"
        $sudo chmod 0640 "$workdir/collector-test.toml"
        exec_start=("${exec_start[@]/\/etc\/postflight\/collector.toml/$workdir/collector-test.toml}")
    fi
    log "starting ${exec_start[*]}"
    $sudo setpriv --reuid="$user" --regid="$group" --init-groups -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="$workdir" USER="$user" LOGNAME="$user" "${environment[@]}" \
        sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" "${exec_start[@]}" \
        >"$collector_log" 2>&1 &
    collector_pid=$!
}

# Poll /readyz of 127.0.0.1:$1 for up to 30 s; false if it never answers 200 or the
# collector exits first.
wait_ready() {
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
        if [ -n "$collector_pid" ] && ! kill -0 "$collector_pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    [ -z "$collector_pid" ] || cat "$collector_log" >&2
    [ -n "$collector_pid" ] || $sudo systemctl status --no-pager postflight >&2 || true
    return 1
}

# SIGTERM (the unit's KillSignal) and wait: a clean stop exits 0.
stop_collector() {
    if [ -z "$collector_pid" ]; then
        $sudo systemctl stop postflight
        return
    fi
    local status=0
    $sudo kill -TERM "$collector_pid"
    wait "$collector_pid" || status=$?
    collector_pid=""
    $sudo rm -f /var/lib/postflight/collector-test.toml
    [ "$status" -eq 0 ] || { cat "$collector_log" >&2; fail "the collector exited with $status on SIGTERM"; }
}

# --- install ------------------------------------------------------------------------
collector_pid=""
cleanup() {
    if [ -n "$collector_pid" ]; then
        $sudo kill "$collector_pid" 2>/dev/null || true
    fi
    $sudo dpkg --purge postflight postflight-probe >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
log "dpkg -i"
$sudo dpkg -i "$collector_deb" "$probe_deb" >/dev/null

# What postinst promises: the system user, its state directory, configs it can read and
# nobody else can (the env files hold tokens).
getent passwd postflight >/dev/null || fail "no postflight user after install"
[ "$(stat -c '%U:%G %a' /var/lib/postflight)" = "postflight:postflight 750" ] \
    || fail "/var/lib/postflight is $(stat -c '%U:%G %a' /var/lib/postflight)"
for config in collector.toml collector.env probe.toml probe.env; do
    owner="$(stat -c '%U:%G %a' "/etc/postflight/$config")"
    [ "$owner" = "root:postflight 640" ] || fail "/etc/postflight/$config is $owner"
done

# --- units --------------------------------------------------------------------------
# systemd-analyze verify reads the installed units as systemd would: missing binaries
# fail it, unknown keys and bad values only print a warning, so any output fails here.
# --man=no: man pages need not be installed here.
log "systemd-analyze verify"
verify="$($sudo systemd-analyze verify --man=no "$unit_dir/postflight.service" \
    "$unit_dir/postflight-probe.service" 2>&1)" || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"

unit_value() { sed -n "s/^$2=//p" "$unit_dir/$1" | tail -n 1; }

# --- configs as the service user ----------------------------------------------------
# The packaged configs must be valid and readable by User= (root:root 0640 was not).
log "check-config as postflight"
user="$(unit_value postflight.service User)"
$sudo runuser -u "$user" -- /usr/bin/postflight check-config --config /etc/postflight/collector.toml
$sudo runuser -u "$(unit_value postflight-probe.service User)" -- \
    /usr/bin/postflight-probe check-config --config /etc/postflight/probe.toml
# The probe's shipped checks pass on any Linux host, as the service user.
$sudo runuser -u "$(unit_value postflight-probe.service User)" -- \
    /usr/bin/postflight-probe once --config /etc/postflight/probe.toml >/dev/null

# --- run the installed collector ----------------------------------------------------
# With systemd as PID 1, dpkg already started the unit (enable = true, start = true):
# ask it. Without (a container, a chroot), start the unit's ExecStart by hand with its
# User, Group, WorkingDirectory and EnvironmentFile, as systemd would.
user="$(unit_value postflight.service User)"
group="$(unit_value postflight.service Group)"
listen="$(sed -n 's/^listen = "\(.*\)"/\1/p' /etc/postflight/collector.toml)"
port="${listen##*:}"
collector_log=/tmp/postflight-packages-collector.log
collector_pid=""
if [ -d /run/systemd/system ]; then
    log "systemd runs here: systemctl restart postflight"
    $sudo systemctl restart postflight
else
    log "systemd is not PID 1 here: running the unit's ExecStart by hand as $user"
    start_by_hand
fi
wait_ready "$port" || fail "the installed collector did not answer /readyz on $port"
[ "$(stat -c '%U' /var/lib/postflight/data)" = "$user" ] || fail "the data directory is not owned by $user"
# /proc/PID belongs to the process's effective user.
main_pid="${collector_pid:-$($sudo systemctl show -P MainPID postflight 2>/dev/null || true)}"
running_as="$(stat -c '%U' "/proc/$main_pid")"
[ "$running_as" = "$user" ] || fail "the collector runs as $running_as, not $user"
log "/readyz answered on 127.0.0.1:$port (collector running as $running_as); stopping it"
stop_collector

# --- purge --------------------------------------------------------------------------
log "dpkg --purge"
$sudo dpkg --purge postflight postflight-probe >/dev/null
trap - EXIT
for package in postflight postflight-probe; do
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -qv "not-installed"; then
        fail "dpkg still knows $package: $(dpkg-query -W -f='${Status}' "$package")"
    fi
done
for gone in /usr/bin/postflight /usr/bin/postflight-probe /etc/postflight /var/lib/postflight \
    "$unit_dir/postflight.service" "$unit_dir/postflight-probe.service" \
    /usr/share/doc/postflight /usr/share/doc/postflight-probe \
    /usr/share/lintian/overrides/postflight /usr/share/lintian/overrides/postflight-probe \
    /etc/systemd/system/multi-user.target.wants/postflight.service \
    /var/lib/systemd/deb-systemd-helper-enabled/postflight.service \
    /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/postflight.service; do
    [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
# Debian leaves system users in place on purge (files they owned may remain elsewhere).
log "purged; the postflight system user stays, as Debian does for system users"
log "ok in ${SECONDS}s"
