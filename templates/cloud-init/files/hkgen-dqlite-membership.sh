#!/bin/bash
# hkgen-dqlite-membership [-c CONFIG] metrics|check VOTERS MEMBERS: this control plane's view of
# the MicroK8s datastore (dqlite) membership. Written by hkgen.
#
# The membership is what `microk8s status` reads (common/utils.py get_dqlite_info): MicroK8s' own
# dqlite shell asks the leader, found through the node store backend/cluster.yaml, with the
# cluster's certificate:
#   $SNAP/bin/dqlite -s file://$SNAP_DATA/var/kubernetes/backend/cluster.yaml \
#       -c backend/cluster.crt -k backend/cluster.key k8s .cluster
# prints one `ID(hex)|ADDRESS|ROLE` line per member (ROLE: voter, stand-by or spare). A voter
# only counts when its own dqlite server answers (`.describe ADDRESS`): a powered-off voter stays
# a voter in the list while three control planes have no stand-by to promote.
#
# metrics (timer, every minute): writes the view for node-exporter's textfile collector
#   hkgen_dqlite_membership_up                     1 when the leader answered, else 0
#   hkgen_dqlite_membership_timestamp_seconds      when this run read it
#   hkgen_dqlite_member{address,role}              1 per member the leader lists
#   hkgen_dqlite_member_reachable{address,role}    1 when this node reached the member, else 0
# (node-exporter adds the node's name); hkgen's maintenance gate rules turn it into alerts that
# stop kured's reboots.
# check VOTERS MEMBERS (the MicroK8s upgrade conductor): exit 0 when VOTERS reachable voters and
# at least MEMBERS voters and stand-bys are listed, else say what is missing and exit 1.
set -u

conf=/etc/hkgen/dqlite-membership.conf
if [ "${1:-}" = -c ]; then
    conf=${2:-}
    shift 2
fi
mode=${1:-}
# Settings; the configuration file sets them all.
dqlite='' backend='' textfile='' timeout=10
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-dqlite-membership: $*"; }
now() { echo "${HKGEN_NOW:-$(date +%s)}"; }
shell() {  # one dqlite shell command against the k8s database
    timeout "$timeout" "$dqlite" -s "file://$backend/cluster.yaml" -c "$backend/cluster.crt" \
        -k "$backend/cluster.key" k8s "$1" 2>/dev/null </dev/null
}

# members: "ADDRESS ROLE REACHABLE" lines; up: 1 when the leader answered
members='' up=0
read_membership() {
    local listing id address role reachable
    listing=$(shell .cluster) || return 0
    up=1
    while IFS='|' read -r id address role; do
        if [ -z "$id" ] || [ -z "$address" ]; then continue; fi
        reachable=0
        shell ".describe $address" >/dev/null && reachable=1
        members+="$address $role $reachable"$'\n'
    done <<<"$listing"
}

metrics() {
    local dir tmp address role reachable
    read_membership
    dir=$(dirname "$textfile")
    mkdir -p "$dir" || exit 1
    tmp="$textfile.tmp"  # not *.prom: the collector never reads a half-written file
    {
        echo "# HELP hkgen_dqlite_membership_up Whether the dqlite leader answered this control plane's membership query."
        echo "# TYPE hkgen_dqlite_membership_up gauge"
        echo "hkgen_dqlite_membership_up $up"
        echo "# HELP hkgen_dqlite_membership_timestamp_seconds When this control plane last read the dqlite membership."
        echo "# TYPE hkgen_dqlite_membership_timestamp_seconds gauge"
        echo "hkgen_dqlite_membership_timestamp_seconds $(now)"
        echo "# HELP hkgen_dqlite_member A dqlite member as the leader lists it, with its role."
        echo "# TYPE hkgen_dqlite_member gauge"
        while read -r address role reachable; do
            if [ -n "$address" ]; then echo "hkgen_dqlite_member{address=\"$address\",role=\"$role\"} 1"; fi
        done <<<"$members"
        echo "# HELP hkgen_dqlite_member_reachable Whether this control plane reached the member's dqlite server."
        echo "# TYPE hkgen_dqlite_member_reachable gauge"
        while read -r address role reachable; do
            if [ -n "$address" ]; then
                echo "hkgen_dqlite_member_reachable{address=\"$address\",role=\"$role\"} $reachable"
            fi
        done <<<"$members"
    } >"$tmp" || exit 1
    chmod 0644 "$tmp" && mv -f "$tmp" "$textfile" || exit 1
}

check() {
    local want_voters=$1 want_members=$2 voters=0 listed=0 address role reachable missing=''
    read_membership
    if [ "$up" != 1 ]; then
        log "the dqlite leader does not answer (no quorum, or dqlite is down here)"
        exit 1
    fi
    while read -r address role reachable; do
        [ -n "$address" ] || continue
        case $role in
            voter)
                listed=$((listed + 1))
                if [ "$reachable" = 1 ]; then
                    voters=$((voters + 1))
                else
                    missing+=" $address"
                fi
                ;;
            stand-by) listed=$((listed + 1)) ;;
        esac
    done <<<"$members"
    if [ "$voters" -lt "$want_voters" ]; then
        log "$voters of $want_voters dqlite voters answer${missing:+ (not answering:$missing)}"
        exit 1
    fi
    if [ "$listed" -lt "$want_members" ]; then
        log "$listed of $want_members control planes are dqlite voters or stand-bys"
        exit 1
    fi
    exit 0
}

case $mode in
    metrics) metrics ;;
    check) check "${2:?VOTERS}" "${3:?MEMBERS}" ;;
    *)
        echo "usage: hkgen-dqlite-membership [-c CONFIG] metrics|check VOTERS MEMBERS" >&2
        exit 2
        ;;
esac
