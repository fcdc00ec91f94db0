#!/usr/bin/env bash
# Recall API deploy with a Postflight health gate and automatic rollback.
#
# Runbook: seeds/004 "Production Migration and Cutover Runbook (CI.5)", §3 "Health gate:
# waits for /readyz ... auto-rollback on failure" and §4 "Rollback". This script keeps the
# runbook's own deploy and rollback scripts and replaces its hand-made parts: the smoke
# test (postflight-probe once), "monitor for 10-15 minutes" (the collector's watch window),
# "roll back on failed health" (postflight gate exit 1) and the release ledger
# (postflight deploys recall-api).
#
# Usage, from the Recall repository root on the server:
#   POSTFLIGHT_URL=http://collector.internal:7878 POSTFLIGHT_TOKEN=... \
#     config/examples/recall-deploy.sh sha-abcdef
#
# Environment:
#   POSTFLIGHT_URL, POSTFLIGHT_TOKEN   the collector and an operator token ([[auth.operators]])
#   POSTFLIGHT_PROBE_CONFIG            probe config with the Recall checks
#                                      (default /etc/postflight/probe.toml, see recall.toml)
#   RECALL_ENV                         deploy environment, the probes' env label (default prod)
#   RECALL_WINDOW                      watch window (default 15m, the runbook's 10-15 minutes)
#   RECALL_GATE_TIMEOUT                give up waiting after (default 20m)
#
# Exit codes:
#   0  deployed and the watch window passed
#   1  the release regressed and was rolled back (the evidence is printed above)
#   2  no verdict (inconclusive, e.g. no probe reported, or the gate timed out): the new
#      version stays; look at `postflight deploys recall-api` and decide
#   3  the deploy itself, the smoke test or a Postflight command failed; nothing was
#      rolled back by this script (server_deploy.sh rolls back a failed start itself)
#
# Blue/green (runbook §3, second variant): replace server_deploy.sh with bringing up the
# idle colour, run the smoke test with --service recall-green (or recall-blue), switch the
# proxy, then deploy + gate recall-api as below; "rollback" is switching the proxy back.
set -euo pipefail

new_tag="${1:?usage: recall-deploy.sh IMAGE_TAG (e.g. sha-abcdef)}"
env_name="${RECALL_ENV:-prod}"
window="${RECALL_WINDOW:-15m}"
timeout="${RECALL_GATE_TIMEOUT:-20m}"
probe_config="${POSTFLIGHT_PROBE_CONFIG:-/etc/postflight/probe.toml}"
service="recall-api"

log() { printf '[%s] %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
ledger() { printf '%s %s\n' "$(date -u +%FT%TZ)" "$*" >> deploy/releases.log; }

# The tag running now: where to come back to if nothing better is known.
previous_tag="$(sed -n 's/^IMAGE_TAG=//p' deploy/.env | tail -n 1)"
log "deploying $service $new_tag to $env_name (running: ${previous_tag:-unknown})"

# 1. The runbook's deploy (it waits for /readyz itself and reverts a failed start).
scripts/deploy/server_deploy.sh --image-tag "$new_tag" || { log "server_deploy.sh failed"; exit 3; }

# 2. Smoke test: every Recall check once, and /version must say the new tag.
if ! postflight-probe once --config "$probe_config" --service "$service" --expect-version "$new_tag"; then
    log "smoke test failed: rolling back to $previous_tag"
    scripts/deploy/server_rollback.sh --to-tag "$previous_tag"
    ledger "deploy $new_tag smoke-failed rollback-to $previous_tag"
    exit 1
fi

# 3. Mark the deploy: the collector snapshots the last hour as the baseline and starts
#    watching every probe's results against it.
deploy_id="$(postflight deploy --service "$service" --env "$env_name" --version "$new_tag" \
    ${previous_tag:+--previous "$previous_tag"} --window "$window" --by "${USER:-deploy}" \
    --note "recall-deploy.sh")" || { log "could not record the deploy"; exit 3; }
log "watching $deploy_id for $window"

# 4. Wait for the verdict.
set +e
postflight gate --deploy "$deploy_id" --timeout "$timeout"
verdict=$?
set -e

case "$verdict" in
0)
    ledger "deploy $new_tag $deploy_id passed"
    log "$new_tag passed its watch window"
    exit 0
    ;;
1)
    # The collector knows the newest version that passed its window and has not
    # regressed since; fall back to the tag that ran before this deploy.
    good="$(postflight last-good "$service" --env "$env_name" --json 2>/dev/null \
        | sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' | head -n 1)"
    good="${good:-$previous_tag}"
    log "$new_tag regressed: rolling back to $good"
    scripts/deploy/server_rollback.sh --to-tag "$good"
    ledger "deploy $new_tag $deploy_id regressed rollback-to $good"
    # Watch the rollback too (it has its own deploy marker in the ledger).
    rollback_id="$(postflight deploy --service "$service" --env "$env_name" --version "$good" \
        --previous "$new_tag" --window "$window" --note "rollback of $deploy_id")" || exit 1
    postflight gate --deploy "$rollback_id" --timeout "$timeout" || log "the rollback did not pass its window either: page a human"
    exit 1
    ;;
2)
    ledger "deploy $new_tag $deploy_id no-verdict"
    log "no verdict for $new_tag: check 'postflight deploys $service' and 'postflight status --service $service'"
    exit 2
    ;;
*)
    log "postflight gate could not reach the collector or was called wrongly (exit $verdict)"
    exit 3
    ;;
esac
