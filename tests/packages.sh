#!/usr/bin/env bash
# The Debian packages `postflight` and `postflight-probe`, end to end on this machine:
# build them, lint them, install them, check what they installed, run the installed
# collector as the service user, purge them. Called by tests/run (so CI runs it); alone:
#
#   tests/packages.sh
#
# Needs root or sudo (apt-get, dpkg, runuser). Idempotent: tools already installed are
# kept, a leftover install from an interrupted run is purged first. It does not need
# systemd as PID 1: the collector is started with its unit's ExecStart, User and
# WorkingDirectory by this script, not by systemctl.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that a new cargo-deb release cannot change the packages under CI.
CARGO_DEB_VERSION=3.8.0
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
# cargo-deb builds the .deb files from [package.metadata.deb]; lintian checks them
# against Debian policy; systemd provides systemd-analyze (installing it does not make it
# PID 1); adduser is what the packages' postinst uses; curl asks /readyz.
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    log "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
missing=()
for package in lintian systemd adduser curl; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
# As the unit would: its ExecStart, User, WorkingDirectory and EnvironmentFile. If
# something else holds the port of the shipped config, run a copy of that config on
# another port instead.
read -r -a exec_start <<<"$(unit_value postflight.service ExecStart)"
workdir="$(unit_value postflight.service WorkingDirectory)"
env_file="$(unit_value postflight.service EnvironmentFile)"
mapfile -t environment < <($sudo grep -Ev '^[[:space:]]*(#|$)' "${env_file#-}" || true)
listen="$(sed -n 's/^listen = "\(.*\)"/\1/p' /etc/postflight/collector.toml)"
port="${listen##*:}"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    port=$((20000 + RANDOM % 10000))
    log "port ${listen##*:} is in use here: running the installed config on $port"
    sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" /etc/postflight/collector.toml \
        | $sudo tee "$workdir/collector-test.toml" >/dev/null
    $sudo chown "root:$user" "$workdir/collector-test.toml"
    exec_start=("${exec_start[@]/\/etc\/postflight\/collector.toml/$workdir/collector-test.toml}")
fi
log "starting ${exec_start[*]} as $user"
# setpriv execs (no fork), so $! is the collector itself when this runs as root.
$sudo setpriv --reuid="$user" --regid="$user" --init-groups -- \
    env "${environment[@]}" sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" "${exec_start[@]}" \
    >/tmp/postflight-packages-collector.log 2>&1 &
collector_pid=$!
ready=""
for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        ready=yes
        break
    fi
    kill -0 "$collector_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$ready" ] || { cat /tmp/postflight-packages-collector.log >&2; fail "the installed collector did not answer /readyz"; }
[ "$(stat -c '%U' /var/lib/postflight/data)" = "$user" ] || fail "the data directory is not owned by $user"
log "/readyz answered; stopping it with SIGTERM"
$sudo kill -TERM "$collector_pid"
status=0
wait "$collector_pid" || status=$?
collector_pid=""
$sudo rm -f "$workdir/collector-test.toml"
[ "$status" -eq 0 ] || { cat /tmp/postflight-packages-collector.log >&2; fail "the collector exited with $status on SIGTERM"; }

# --- purge --------------------------------------------------------------------------
log "dpkg --purge"
$sudo dpkg --purge postflight postflight-probe >/dev/null
trap - EXIT
for gone in /usr/bin/postflight /usr/bin/postflight-probe /etc/postflight /var/lib/postflight \
    "$unit_dir/postflight.service"; do
    [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
log "ok"
