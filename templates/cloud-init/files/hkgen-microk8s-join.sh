#!/bin/bash
# hkgen-microk8s-join [CONFIG]: make this node a member of the MicroK8s cluster. Written by hkgen.
#
# One attempt round per run: exit 0 when the node formed or joined the cluster (a marker file
# stops later runs), exit 75 to be run again (the systemd unit restarts it every 30 s, forever).
#
# Why not the `join:` key of a launch configuration: it names one fixed peer and retries it
# forever, and it cannot tell "the cluster does not exist yet" from "that peer is down".
#
# The rule that prevents a second cluster: a control plane adds the persistent join token to
# itself only after it formed or joined the cluster, so a fresh, unjoined node answers every
# join with "invalid token". The bootstrap node first tries to join each peer; it forms the
# cluster only when every peer answered and refused. A reflashed bootstrap node with live peers
# therefore joins them, and a peer that does not answer at all makes it wait, never form.
# One more guard for a JOIN_TOKEN changed in the secrets file while the cluster kept the old one:
# then members refuse too, but they present certificates of one and the same cluster CA, while
# fresh nodes each have a CA of their own; two peers with one CA stop the bootstrap node.
# Other control planes and workers only ever join.
#
# When the other control planes are gone for good (rebuilding with fewer Pis), an admin lets
# the bootstrap node form the cluster without their answer: `sudo touch $form_anyway`
# (/etc/hkgen/microk8s/form-anyway); it still joins a peer that accepts.
set -u

conf=${1:-/etc/hkgen/microk8s/join.conf}
# Settings; the configuration file sets them all.
role='' peers='' channel='' token_file='' launcher_dir='' addons_config='' token_config=''
state_file='' join_lock='' microk8s='' snap='' openssl='' form_anyway='' agent_port=25000 after_join=''
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-microk8s-join: $*"; }

case $role in
    bootstrap | control-plane | worker) ;;
    *)
        log "$conf: role must be bootstrap, control-plane or worker"
        exit 1
        ;;
esac

if [ -e "$state_file" ]; then
    log "nothing to do: $(cat "$state_file")"
    exit 0
fi

# cloud-init's snap step fails when the network or the clock was not ready on first boot.
if ! "$snap" list microk8s >/dev/null 2>&1; then
    log "MicroK8s is not installed; installing channel $channel"
    if ! "$snap" install microk8s --classic --channel="$channel"; then
        log "snap install failed; will retry"
        exit 75
    fi
    "$snap" refresh --hold microk8s || log "warning: could not hold MicroK8s refreshes"
fi

if ! "$microk8s" status --wait-ready --timeout 300 >/dev/null 2>&1; then
    log "the local MicroK8s services are not ready yet; will retry"
    exit 75
fi

token=$(tr -d '[:space:]' <"$token_file" 2>/dev/null || true)
if ! [[ $token =~ ^[a-z0-9]{32}$ ]]; then
    log "no valid join token in $token_file: write the seed with 'hkgen boot-media', which fills in the secrets"
    exit 75
fi

install_part() {  # copy a launch-configuration part into the directory the cluster agent applies
    [ -n "$1" ] || return 0
    install -m 0600 "$1" "$launcher_dir/hkgen-$(basename "$1")"
}

finish() {  # $1: what happened
    mkdir -p "$(dirname "$state_file")"
    printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >"$state_file"
    log "$1"
    exit 0
}

result=failed
try_peer() {  # $1: peer address; sets result to joined, refused or failed
    local peer=$1 out rc
    local -a flags=()
    [ "$role" = worker ] && flags=(--worker)
    log "trying to join $peer"
    out=$(timeout 180 "$microk8s" join "$peer:$agent_port/$token" "${flags[@]}" 2>&1)
    rc=$?
    out=${out//$token/<token>}
    if [ "$rc" -eq 0 ]; then
        # join can print a failure and still exit 0: the node itself tells (hkgen-microk8s-after-join
        # also gives the node its own kubelet arguments back).
        if [ -n "$after_join" ] && ! "$after_join" "$conf"; then
            result=failed
            # Half joined: back to a standalone node with its own CA (leave also deletes its dqlite
            # entry through a member), so the next attempt starts clean and, should the entry stay,
            # the control planes' reclaim sees a fresh node and removes it.
            log "$peer: join exited 0 but this node did not become a member; leaving the cluster again, will retry"
            timeout 600 "$microk8s" leave >/dev/null 2>&1 || log "warning: microk8s leave failed"
            return
        fi
        result=joined
        return
    fi
    # A failed attempt leaves MicroK8s' join lock behind, which would block certificate refreshes.
    rm -f "$join_lock"
    if printf '%s\n' "$out" | grep -qi 'invalid token'; then
        result=refused
        log "$peer refused the token: it is not a cluster member yet"
    else
        result=failed
        log "$peer: join failed (exit $rc): $(printf '%s\n' "$out" | tail -n 3 | tr '\n' ' ')"
        if printf '%s\n' "$out" | grep -q 'already known to dqlite'; then
            log "$peer still lists this reflashed node as a member; the control planes remove the stale entry" \
                "by themselves within minutes (hkgen-microk8s-reclaim)"
        fi
    fi
}

ca_of() {  # identity of the CA that signed the certificate peer $1's cluster agent presents
    timeout 15 "$openssl" s_client -connect "$1:$agent_port" </dev/null 2>/dev/null |
        "$openssl" x509 -noout -ext authorityKeyIdentifier 2>/dev/null | tail -n +2 | tr -d ' \n'
}

one_cluster() {  # prints "A and B" when two peers are members of one cluster
    local peer ca
    local -A by_ca=()
    for peer in $peers; do
        ca=$(ca_of "$peer")
        [ -n "$ca" ] || continue
        if [ -n "${by_ca[$ca]:-}" ]; then
            echo "${by_ca[$ca]} and $peer"
            return 0
        fi
        by_ca[$ca]=$peer
    done
    return 1
}

refused_by_all=1
for peer in $peers; do
    try_peer "$peer"
    case $result in
        joined)
            install_part "$token_config"
            finish "joined the cluster through $peer as $role"
            ;;
        refused) ;;
        *) refused_by_all=0 ;;
    esac
done

if [ "$role" = bootstrap ] && [ "$refused_by_all" = 0 ] && [ -n "$form_anyway" ] && [ -e "$form_anyway" ]; then
    log "$form_anyway exists: forming the cluster although not every peer answered"
    refused_by_all=1
fi
if [ "$role" = bootstrap ] && [ "$refused_by_all" = 1 ] && [ ! -e "$form_anyway" ] && members=$(one_cluster); then
    log "$members already form a cluster (one CA) but refuse this node's token: the JOIN_TOKEN in the" \
        "secrets file is not the one the cluster runs with; not forming a second cluster (see RECOVERY.md)"
    exit 75
fi
if [ "$role" = bootstrap ] && [ "$refused_by_all" = 1 ]; then
    # Every peer answered and none is a member: no cluster exists, this node forms it: the token
    # part lets peers join, the addons part enables the cluster-wide addons (separate files, so
    # an addon that keeps failing does not hold the token back).
    install_part "$token_config"
    install_part "$addons_config"
    finish "formed the cluster (peers: ${peers:-none})"
fi

log "not a cluster member yet; will retry"
exit 75
