#!/bin/bash
# hkgen-microk8s-upgrade conduct|agent [CONFIG]: MicroK8s channel upgrades from Git, one node at a
# time. Written by hkgen.
#
# The wanted channel comes from Git: the ConfigMap kube-system/hkgen-microk8s-upgrade (`channel`,
# and `order`: control planes first, in file order, then the workers) that `hkgen render` writes
# from cluster.yaml's microk8s.channel. Snap auto-refresh stays held on every node.
#
# conduct (control planes, every 2 min): one step per run, state in the ConfigMap
# hkgen-microk8s-upgrade-status (absent = idle):
#   idle       -> the first node in `order` whose kubelet is not on the wanted minor is next. Only
#                 when every node is Ready and schedulable, no Longhorn volume is degraded or
#                 faulted and the dqlite voters are complete (`voters` answer and `members`
#                 control planes are voters or stand-bys, as hkgen-dqlite-membership sees them
#                 here); creating the status ConfigMap is the lock between the conductors, and
#                 kured's node lock (annotation of its DaemonSet) is taken too, so no reboot runs
#                 meanwhile. Then: drain (PodDisruptionBudgets hold) and annotate the node
#                 hkgen.io/microk8s-channel=<channel>; its agent refreshes the snap.
#   upgrading  -> the node is back Ready on the new minor (a control plane: and the dqlite voters
#                 complete again): uncordon, release both locks (idle). The agent reported an
#                 error, or the node is not back within `timeout`: failed.
#   failed     -> nothing moves (upgrades and kured reboots stay locked) until an admin repairs
#                 the node and deletes the status ConfigMap and kured's lock (RECOVERY.md).
# agent (every node, every minute): reads its own Node object with the kubelet's credentials;
# when hkgen.io/microk8s-channel names another channel than the installed one, refreshes the
# snap to it (and holds it again); a failed refresh is written back as
# hkgen.io/microk8s-upgrade-error on its own Node, which stops the conductor.
set -u

mode=${1:-}
conf=${2:-/etc/hkgen/microk8s-upgrade.conf}
# Settings; the configuration file sets them all.
node='' kubectl='' admin_kubeconfig='' node_kubeconfig='' snap='' namespace='' config_map='' status_map=''
kured_namespace='' kured_daemonset='' lock_annotation='' timeout=1800 drain_timeout=900 membership=''
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-microk8s-upgrade: $*"; }
now() { echo "${HKGEN_NOW:-$(date +%s)}"; }
kc() { "$kubectl" --kubeconfig="$admin_kubeconfig" "$@"; }
kn() { "$kubectl" --kubeconfig="$node_kubeconfig" "$@"; }
node_field() { kc get node "$1" -o "jsonpath=$2"; }

agent() {
    local want have error
    if ! want=$(kn get node "$node" -o 'jsonpath={.metadata.annotations.hkgen\.io/microk8s-channel}'); then
        log "cannot read node $node; will retry"
        exit 75
    fi
    [ -n "$want" ] || exit 0
    error=$(kn get node "$node" -o 'jsonpath={.metadata.annotations.hkgen\.io/microk8s-upgrade-error}')
    if [ -n "$error" ]; then
        log "stopped: $error (an admin repairs the node, then removes the annotation)"
        exit 1
    fi
    have=$("$snap" list microk8s | awk 'NR == 2 { print $4 }')
    if [ "$have" = "$want" ]; then
        exit 0
    fi
    log "refreshing MicroK8s from $have to $want"
    if ! "$snap" refresh microk8s --channel="$want"; then
        kn annotate node "$node" --overwrite "hkgen.io/microk8s-upgrade-error=snap refresh from $have to $want failed"
        log "snap refresh to $want failed; the upgrade stops here"
        exit 1
    fi
    "$snap" refresh --hold microk8s || log "warning: could not hold MicroK8s refreshes"
    log "MicroK8s now tracks $want"
}

fail() {
    kc -n "$namespace" patch configmap "$status_map" --type=merge -p "{\"data\":{\"state\":\"failed\",\"reason\":\"$1\"}}"
    log "FAILED: $1; nothing else is upgraded or rebooted until an admin repairs it (see RECOVERY.md)"
    exit 1
}

cm_field() { kc -n "$namespace" get configmap "$config_map" -o "jsonpath={.data.$1}"; }
control_plane() { case " $(cm_field controlPlanes) " in *" $1 "*) return 0 ;; esac; return 1; }
# The dqlite voters as this control plane sees them: prints why they are not complete (exit 1).
datastore() {
    local voters members out
    if ! voters=$(cm_field voters) || ! members=$(cm_field members); then
        echo "cannot read $config_map"
        return 1
    fi
    if [ -z "$voters" ] || [ -z "$members" ] || [ -z "$membership" ]; then
        echo "the dqlite voters cannot be checked (no counts in $config_map or no checker here)"
        return 1
    fi
    out=$("$membership" check "$voters" "$members") && return 0
    echo "${out#hkgen-dqlite-membership: }"
    return 1
}

release() {
    kc -n "$kured_namespace" annotate daemonset "$kured_daemonset" "$lock_annotation-" >/dev/null 2>&1
    kc -n "$namespace" delete configmap "$status_map" >/dev/null
}

conduct() {
    local channel order minor state target since version ready error host candidate line dq=''
    if ! channel=$(kc -n "$namespace" get configmap "$config_map" -o 'jsonpath={.data.channel}') ||
        ! order=$(kc -n "$namespace" get configmap "$config_map" -o 'jsonpath={.data.order}'); then
        log "cannot read $namespace/$config_map; will retry"
        exit 75
    fi
    minor=${channel%%/*}
    state=$(kc -n "$namespace" get configmap "$status_map" -o 'jsonpath={.data.state}' 2>/dev/null) || state=idle
    case $state in
        failed)
            log "stopped: $(kc -n "$namespace" get configmap "$status_map" -o 'jsonpath={.data.reason}')"
            exit 1
            ;;
        upgrading)
            target=$(kc -n "$namespace" get configmap "$status_map" -o 'jsonpath={.data.node}')
            since=$(kc -n "$namespace" get configmap "$status_map" -o 'jsonpath={.data.since}')
            error=$(node_field "$target" '{.metadata.annotations.hkgen\.io/microk8s-upgrade-error}')
            [ -z "$error" ] || fail "$target: $error"
            version=$(node_field "$target" '{.status.nodeInfo.kubeletVersion}')
            ready=$(node_field "$target" '{.status.conditions[?(@.type=="Ready")].status}')
            if [[ $version == "v$minor".* && $ready == True ]]; then
                if ! control_plane "$target" || dq=$(datastore); then
                    kc uncordon "$target" >/dev/null
                    release
                    log "$target runs $version and is Ready: done"
                    exit 0
                fi
            fi
            if [ $(($(now) - since)) -gt "$timeout" ]; then
                [ -z "$dq" ] || fail "$target is back on $version, but the datastore is not complete after ${timeout}s: $dq"
                fail "$target is not back Ready on $channel after ${timeout}s (kubelet $version, Ready $ready)"
            fi
            log "waiting for $target (kubelet $version, Ready $ready${dq:+; dqlite: $dq})"
            exit 0
            ;;
    esac
    target=''
    for host in $order; do
        version=$(node_field "$host" '{.status.nodeInfo.kubeletVersion}') || exit 75
        if [[ $version != "v$minor".* ]]; then
            target=$host
            break
        fi
    done
    if [ -z "$target" ]; then
        log "every node runs MicroK8s $minor"
        exit 0
    fi
    # Health gate: every node Ready and schedulable, no Longhorn volume degraded or faulted.
    while read -r candidate ready error; do
        if [ "$ready" != True ] || [ "$error" = true ]; then
            log "$target waits: node $candidate is not Ready and schedulable"
            exit 0
        fi
    done < <(kc get nodes -o 'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.unschedulable}{"\n"}{end}')
    while read -r line; do
        case $line in
            *" degraded" | *" faulted")
                log "$target waits: Longhorn volume ${line%% *} is ${line##* }"
                exit 0
                ;;
        esac
    done < <(kc -n longhorn-system get volumes.longhorn.io -o 'jsonpath={range .items[*]}{.metadata.name} {.status.robustness}{"\n"}{end}')
    if ! dq=$(datastore); then
        log "$target waits: dqlite: $dq"
        exit 0
    fi
    # The lock between conductors: creating an object is atomic.
    if ! kc -n "$namespace" create configmap "$status_map" --from-literal=state=upgrading \
        --from-literal=node="$target" --from-literal=since="$(now)" --from-literal=channel="$channel" >/dev/null 2>&1; then
        log "another control plane is conducting"
        exit 0
    fi
    # kured's lock: no reboot starts while a node is upgraded (and none is upgraded during one).
    if ! kc -n "$kured_namespace" annotate daemonset "$kured_daemonset" \
        "$lock_annotation={\"nodeID\":\"$target\",\"metadata\":{\"reason\":\"hkgen-microk8s-upgrade\"}}" >/dev/null 2>&1 &&
        kc -n "$kured_namespace" get daemonset "$kured_daemonset" >/dev/null 2>&1; then
        kc -n "$namespace" delete configmap "$status_map" >/dev/null
        log "$target waits: kured holds the node lock"
        exit 0
    fi
    log "upgrading $target to $channel"
    if ! kc drain "$target" --ignore-daemonsets --delete-emptydir-data --timeout="${drain_timeout}s"; then
        kc uncordon "$target" >/dev/null
        fail "draining $target failed (a PodDisruptionBudget or a volume's last replica held it)"
    fi
    kc annotate node "$target" --overwrite "hkgen.io/microk8s-channel=$channel" >/dev/null
}

case $mode in
    agent) agent ;;
    conduct) conduct ;;
    *)
        echo "usage: hkgen-microk8s-upgrade conduct|agent [CONFIG]" >&2
        exit 2
        ;;
esac
