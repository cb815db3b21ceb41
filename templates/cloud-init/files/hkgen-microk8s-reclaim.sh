#!/bin/bash
# hkgen-microk8s-reclaim [CONFIG]: let a reflashed node rejoin under its old name and address.
# Written by hkgen; a timer runs it every two minutes on every control plane that is a member.
#
# A reflashed control plane cannot join while its old self is still a dqlite member: the cluster
# agent refuses with "the joining node (<ip>) is already known to dqlite". This script, on a live
# control plane, removes such a stale member (`microk8s remove-node --force`) only when all of
# these hold, so a healthy voter is never removed and the datastore is never split:
#   * the API server answers here (this side has quorum);
#   * the node is one of this cluster's nodes (members file) and is not Ready (or has no Node);
#   * its MicroK8s cluster agent answers and presents a certificate of a CA other than this
#     cluster's: it is a fresh installation waiting to join, not a member that is slow or cut off
#     (a member, however sick, carries the cluster's CA; a powered-off node does not answer);
#   * at most one node per run, and only when the other voters stay a majority of the dqlite
#     voters once it is gone.
# `remove-node` exits 1 even when it removed the dqlite entry of a node without a Node object, so
# the result is judged by reading the members again. Workers are not in dqlite: a reflashed worker
# joins by itself and re-registers; its stale Node (old taints, NotReady) is deleted the same way.
set -u

conf=${1:-/etc/hkgen/microk8s/reclaim.conf}
members_file='' microk8s='' openssl='' joined_file='' agent_port=25000 self_ip=''
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-microk8s-reclaim: $*"; }

[ -e "$joined_file" ] || exit 0
"$microk8s" kubectl get --raw /readyz >/dev/null 2>&1 || exit 0

ca_of() {  # identity of the CA that signed the certificate the cluster agent at $1 presents
    timeout 15 "$openssl" s_client -connect "$1:$agent_port" </dev/null 2>/dev/null |
        "$openssl" x509 -noout -ext authorityKeyIdentifier 2>/dev/null | tail -n +2 | tr -d ' \n'
}
datastore() {  # "voters" or "standby": addresses (ip:port) of that dqlite role
    local label=master
    [ "$1" = standby ] && label=standby
    "$microk8s" status 2>/dev/null | sed -n "s/^ *datastore $label nodes: *//p" | tr ' ' '\n' | grep -v '^none$'
}

ours=$(ca_of "$self_ip")
if [ -z "$ours" ]; then
    log "cannot read this node's own cluster CA; nothing done"
    exit 0
fi

while read -r name ip role; do
    if [ -z "$name" ] || [ "$ip" = "$self_ip" ]; then continue; fi
    ready=$("$microk8s" kubectl get node "$name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>&1)
    case $ready in
        True) continue ;;
        *NotFound*) node=absent ;;
        *) node=present ;;
    esac
    voters=$(datastore voters)
    in_dqlite=0
    printf '%s\n' "$voters" "$(datastore standby)" | grep -q "^$ip:" && in_dqlite=1
    [ "$in_dqlite" = 1 ] || [ "$node" = present ] || continue
    theirs=$(ca_of "$ip")
    if [ -z "$theirs" ] || [ "$theirs" = "$ours" ]; then continue; fi
    if printf '%s\n' "$voters" | grep -q "^$ip:"; then
        total=$(printf '%s\n' "$voters" | grep -c .)
        # The voters left must still be a majority of the voters before the removal.
        if [ $((2 * (total - 1))) -le "$total" ]; then
            log "$name ($ip) was reflashed, but removing its stale voter would leave $((total - 1)) of $total: not removed"
            continue
        fi
    fi
    target=$name
    [ "$node" = absent ] && target=$ip
    log "$name ($ip, $role) was reflashed and waits to join (its agent presents another CA): removing its stale" \
        "membership so it can rejoin"
    "$microk8s" remove-node "$target" --force >/dev/null 2>&1
    if datastore voters | grep -q "^$ip:" || datastore standby | grep -q "^$ip:" ||
        "$microk8s" kubectl get node "$name" >/dev/null 2>&1; then
        log "warning: $name ($ip) is still listed after remove-node; will try again"
    else
        log "removed the stale membership of $name ($ip)"
    fi
    exit 0  # one node per run
done <"$members_file"
exit 0
