#!/bin/bash
# hkgen-microk8s-after-join [CONFIG]: run by hkgen-microk8s-join right after `microk8s join`
# exited 0. Written by hkgen. Exit 0 when this node really is a member, 1 when it is not.
#
# 1. The node's own kubelet arguments come back. Upstream `microk8s join` replaces the joining
#    node's kubelet args file with the contacted node's (join.py store_base_kubelet_args) and
#    restarts the kubelet, so a control plane joining through a tainted peer would register
#    tainted, or untainted through an untainted one. The arguments hkgen gave this node
#    (kubelet-args: one `--flag=value` a line) are written back, a `--register-with-taints` it
#    was not given is dropped, and the kubelet restarted. The Node object registered meanwhile is
#    corrected through the API on a control plane; on a worker (no admin credentials) the node
#    labeller converges its taints within minutes, in both directions.
# 2. Success is judged by the node, not by join's exit code: join.py's update_dqlite gives up
#    after ~50 s of waiting and still prints "Successfully joined" and exits 0. A control plane
#    counts as joined when its Node is Ready and its address is a dqlite voter or stand-by; a
#    worker when MicroK8s marked it clustered and its kubelite runs.
set -u

conf=${1:-/etc/hkgen/microk8s/join.conf}
role='' microk8s='' snap='' kubelet_args='' own_args='' node_ip='' node_name='' clustered_lock=''
ready_timeout=600 ready_poll=10 control_plane_taint='node-role.kubernetes.io/control-plane'
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-microk8s-after-join: $*"; }

# --- 1. this node's kubelet arguments ------------------------------------------------------------
restore_args() {
    local line flag tmp
    [ -f "$own_args" ] && [ -f "$kubelet_args" ] || return 0
    tmp=$(mktemp "$kubelet_args.hkgen.XXXXXX") || return 1
    # Keep the peer's general arguments; drop the per-node ones this node sets itself or must not have.
    grep -v -e '^--register-with-taints[= ]' "$kubelet_args" >"$tmp"
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        flag=${line%%=*}
        grep -v -e "^${flag}[= ]" "$tmp" >"$tmp.next"
        mv "$tmp.next" "$tmp"
        printf '%s\n' "$line" >>"$tmp"
    done <"$own_args"
    if cmp -s "$tmp" "$kubelet_args"; then
        rm -f "$tmp"
        return 0
    fi
    cat "$tmp" >"$kubelet_args" && rm -f "$tmp"
    log "restored this node's kubelet arguments (join had copied the peer's)"
    "$snap" restart microk8s.daemon-kubelite >/dev/null 2>&1 || log "warning: could not restart kubelite"
}
restore_args || log "warning: could not restore the kubelet arguments"

own_taint() { grep -q -e "^--register-with-taints=.*$control_plane_taint" "$own_args" 2>/dev/null; }

fix_node_taints() {  # control planes only: the Node registered with the peer's arguments
    if own_taint; then
        "$microk8s" kubectl taint node "$node_name" "$control_plane_taint=:NoSchedule" --overwrite >/dev/null 2>&1
    else
        "$microk8s" kubectl taint node "$node_name" "$control_plane_taint-" >/dev/null 2>&1
    fi
    return 0  # "not found" (the taint already right) is fine; the labeller converges the rest
}

# --- 2. is it a member? ---------------------------------------------------------------------------
member() {
    if [ "$role" = worker ]; then
        [ -e "$clustered_lock" ] && "$snap" services microk8s.daemon-kubelite 2>/dev/null | grep -q ' active'
        return
    fi
    local ready datastore
    ready=$("$microk8s" kubectl get node "$node_name" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)
    [ "$ready" = True ] || return 1
    datastore=$("$microk8s" status 2>/dev/null | grep -E '^ *datastore (master|standby) nodes:')
    printf '%s\n' "$datastore" | grep -qE "[: ]$node_ip:[0-9]+( |$)"
}

waited=0
while ! member; do
    if [ "$waited" -ge "$ready_timeout" ]; then
        log "join exited 0 but after ${waited}s this node is not a member (Node Ready and, for a control plane," \
            "a dqlite voter or stand-by)"
        exit 1
    fi
    sleep "$ready_poll"
    waited=$((waited + ready_poll))
done
[ "$role" = worker ] || fix_node_taints
log "this node is a cluster member ($role)"
exit 0
