#!/bin/sh
# hkgen restore gate: runs before the apps layer (Flux `configs` Kustomization with wait, Argo CD
# sync wave 30) and decides, for one volume or one CloudNativePG database of an app, whether the
# app may start.
#
# Volume (GATE_KIND=volume):
#   the PVC exists (not held)              -> nothing to restore (a running cluster); its marker is
#                                             written if missing (a volume made critical later, or
#                                             from before the gate), so a rebuild restores it. S3
#                                             trouble never stops a running cluster's apps here
#   the marker object is absent in S3      -> the volume never existed: write the marker; the app
#                                             creates an empty volume (a claim held earlier is
#                                             released: its marker was deleted on purpose)
#   the marker is present (cluster rebuilt) -> the PVC is created first, "held": bound to the PV
#                                             name $VOLUME_PREFIX, which does not exist yet, so the
#                                             StatefulSet adopts it and its pod waits. Then the
#                                             latest Longhorn backup (named by its BackupVolume) is
#                                             restored into a Longhorn Volume and the PV of that
#                                             name created: the claim binds and the app starts
#   no backup yet / Longhorn trouble       -> the PVC stays held: that app alone waits. The gate
#                                             exits 0 with the reason (log, status ConfigMap,
#                                             Warning Event), so the rest of the apps layer starts;
#                                             its next run (the Job is re-created every ~15 minutes)
#                                             tries again. The app never starts empty
#   S3 unreachable                         -> exit non-zero (whether the volume existed is unknown,
#                                             and that holds every gate alike); the Job retries
# Database (GATE_KIND=database): the gate, not Git, decides how the database starts, and creates
# its CloudNativePG Cluster itself (the apps layer's copy has no `bootstrap`):
#   the Cluster exists                     -> nothing to do. One made before the gate created
#                                             them (its bootstrap, from Git, names $DB_NAME): the
#                                             gate co-owns that bootstrap, values unchanged, once.
#                                             One the gate did not create whose bootstrap does not
#                                             name $DB_NAME was made by the GitOps engine before the
#                                             gate ran (the Cluster was deleted by hand):
#                                             CloudNativePG started an empty database with its
#                                             defaults -> stop (RECOVERY.md)
#   no backups in its folder               -> a new database: the initdb variant is created
#   a base backup in its folder            -> a rebuild: the recovery variant is created; it
#                                             archives into the same folder on a new timeline
#   WAL but no base backup                 -> nothing to recover from, and a new database there
#                                             would mix its WAL with the old -> stop
#   S3 unreachable                         -> exit non-zero, nothing created; the Job retries
# The Cluster is created with `kubectl create` (if it already exists, another attempt won: fine)
# under its own field manager, so neither engine's apply ever removes what only the gate sets.
#
# Needs kubectl and aws (AWS CLI v2) on PATH; the S3 credentials, region and endpoint come from the
# standard AWS_* variables. Settings (environment): GATE_KIND, NAMESPACE, STATUS_CONFIGMAP, BUCKET,
# and per kind
#   volume:   PVC, POD (the StatefulSet pod that mounts it), MARKER, STORAGE_CLASS, RECURRING_GROUP, VOLUME_PREFIX, REPLICAS,
#             LONGHORN_NAMESPACE, BACKUP_TARGET, RESTORE_TIMEOUT (seconds), POLL_SECONDS
#   database: DB_CLUSTER, DB_NAME (its application database), ARCHIVE (s3 key prefix of its backup
#             folder, ending in /), MANIFESTS (folder holding initdb.yaml and recovery.yaml, the
#             Cluster's two variants), FIELD_MANAGER
set -u

tab=$(printf '\t')
STATUS_KEY=${PVC:-${DB_CLUSTER:-unknown}}

log() {
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

# One line without characters that would break the JSON and YAML written below.
clean() {
  printf '%s' "$*" | tr '\n\t' '  ' | tr -d "\"\\\\"
}

# Records the outcome for people: a key per volume in the status ConfigMap of the namespace
# (`kubectl get configmap hkgen-restore-status -o yaml`) and an Event on that ConfigMap.
record() {
  kind=$1 reason=$2 message=$(clean "$3")
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kubectl -n "$NAMESPACE" create configmap "$STATUS_CONFIGMAP" >/dev/null 2>&1 || true
  kubectl -n "$NAMESPACE" patch configmap "$STATUS_CONFIGMAP" --type merge \
    -p "{\"data\":{\"$STATUS_KEY\":\"$now $reason: $message\"}}" >/dev/null ||
    log "warning: could not update configmap $STATUS_CONFIGMAP"
  kubectl -n "$NAMESPACE" create -f - >/dev/null <<EOF || log "warning: could not record an event"
apiVersion: v1
kind: Event
metadata:
  generateName: hkgen-restore-
  namespace: "$NAMESPACE"
involvedObject:
  apiVersion: v1
  kind: ConfigMap
  name: "$STATUS_CONFIGMAP"
  namespace: "$NAMESPACE"
type: "$kind"
reason: "$reason"
message: "$STATUS_KEY: $message"
firstTimestamp: "$now"
lastTimestamp: "$now"
count: 1
source:
  component: hkgen-restore-gate
EOF
}

# One app's volume cannot be restored yet: its claim stays held (its pod waits), the rest goes on.
hold() {
  log "HELD: $2"
  record Warning "$1" "$2; PVC $PVC stays held (its app waits, the other apps start); the gate tries again on its next run"
  exit 0
}

done_ok() {
  log "$2"
  record Normal "$1" "$2"
  exit 0
}

fail() {
  log "ERROR: $2"
  record Warning "$1" "$2"
  exit 1
}

# Exact keys under an S3 prefix, one per line (nothing when there are none). Fails when the bucket
# cannot be listed: an unreachable target must never read as "no backup".
s3_keys() {
  if ! listing=$(aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$1" --query 'Contents[].Key' --output text); then
    return 1
  fi
  printf '%s\n' "$listing" | tr '\t' '\n' | grep -v -x -e 'None' -e '' || true
}

# --- database -------------------------------------------------------------------------------------

# Creates the Cluster from its variant $1 (initdb or recovery); another attempt that got there first
# is as good (the variants differ only in how the database starts, and that attempt saw the same
# bucket).
create_cluster() {
  if out=$(kubectl create --field-manager="$FIELD_MANAGER" -f "$MANIFESTS/$1.yaml" 2>&1); then
    return 0
  fi
  case $out in
    *AlreadyExists*|*"already exists"*) log "Cluster $DB_CLUSTER was created meanwhile by another attempt"; return 0 ;;
  esac
  log "kubectl create: $out"
  return 1
}

# A Cluster made before the gate created them got its bootstrap from Git, so the GitOps engine owns
# that field and would remove it when it applies the Cluster without one; CloudNativePG's webhook
# would then default it to a database `app` (and the operator keeps the app user's Secret in step
# with it). A server-side apply of the same values, under the gate's field manager, makes the gate
# a co-owner: the field stays. The resourceVersion read with the values makes the apply fail
# instead of acting on a Cluster changed (or deleted and re-made) meanwhile.
adopt_cluster() {
  live=$(kubectl -n "$NAMESPACE" get clusters.postgresql.cnpg.io "$DB_CLUSTER" -o \
    'jsonpath={.metadata.resourceVersion}{"\t"}{.spec.bootstrap}{"\t"}{.spec.externalClusters}') || return 1
  version=$(printf '%s' "$live" | cut -f1)
  spec="\"bootstrap\":$(printf '%s' "$live" | cut -f2)"
  external=$(printf '%s' "$live" | cut -f3)
  [ -z "$external" ] || spec="$spec,\"externalClusters\":$external"
  meta="\"name\":\"$DB_CLUSTER\",\"namespace\":\"$NAMESPACE\",\"resourceVersion\":\"$version\""
  meta="$meta,\"annotations\":{\"hkgen.io/bootstrap\":\"adopted\"}"
  printf '%s\n' "{\"apiVersion\":\"postgresql.cnpg.io/v1\",\"kind\":\"Cluster\",\"metadata\":{$meta},\"spec\":{$spec}}" |
    kubectl apply --server-side --field-manager="$FIELD_MANAGER" -f - >/dev/null
}

gate_database() {
  found=$(kubectl -n "$NAMESPACE" get clusters.postgresql.cnpg.io "$DB_CLUSTER" --ignore-not-found -o \
    'jsonpath={.metadata.name}{"\t"}{.metadata.annotations.hkgen\.io/bootstrap}{"\t"}{.spec.bootstrap.initdb.database}{"\t"}{.spec.bootstrap.recovery.database}') ||
    fail ApiError "cannot read Cluster $DB_CLUSTER from the Kubernetes API"
  if [ -n "$found" ]; then
    started=$(printf '%s' "$found" | cut -f2)
    named=$(printf '%s' "$found" | cut -f3-4 | tr "$tab" ' ')
    if [ -z "$started" ] && { [ "$named" = "$DB_NAME " ] || [ "$named" = " $DB_NAME" ]; }; then
      adopt_cluster || fail ApiError "cannot co-own the bootstrap of Cluster $DB_CLUSTER; the gate tries again"
      done_ok Present "database $DB_CLUSTER exists (made before the gate created Clusters); its bootstrap is now co-owned by the gate, so the Cluster in Git (without one) leaves it as it is"
    fi
    if [ -z "$started" ]; then
      fail NotCreatedByGate "Cluster $DB_CLUSTER exists, but the gate did not create it and its bootstrap does not name database $DB_NAME: the GitOps engine re-created it before the gate ran (was it deleted by hand?), so CloudNativePG started a new, empty database. Its backups at s3://$BUCKET/$ARCHIVE are untouched (CloudNativePG does not archive a new database into a folder holding WAL). Delete this Cluster and let the gate re-create it from the backups: see RECOVERY.md"
    fi
    done_ok Present "database $DB_CLUSTER exists (started: ${started:-before the gate created Clusters}); nothing to do"
  fi
  # No braced variable names here: they read like placeholders of the secrets file to whoever
  # substitutes those (the ConfigMap opts out of Flux's, but keep it unambiguous).
  base_prefix=$ARCHIVE"base/"
  base=$(s3_keys "$base_prefix") ||
    fail TargetUnreachable "cannot list s3://$BUCKET/$base_prefix; nothing created, the gate tries again"
  if [ -n "$base" ]; then
    create_cluster recovery || fail ApiError "cannot create Cluster $DB_CLUSTER (recovery)"
    done_ok Recover "database $DB_CLUSTER recovers from its backups at s3://$BUCKET/$ARCHIVE (latest base backup and all WAL after it) and archives there on a new timeline"
  fi
  other=$(s3_keys "$ARCHIVE") ||
    fail TargetUnreachable "cannot list s3://$BUCKET/$ARCHIVE; nothing created, the gate tries again"
  if [ -n "$other" ]; then
    fail NoBackup "s3://$BUCKET/$ARCHIVE holds WAL of an earlier $DB_CLUSTER but no base backup: nothing to recover from, and a new database there would mix its WAL with the old. If that data is not needed, move the folder away; the gate then starts a new database"
  fi
  create_cluster initdb || fail ApiError "cannot create Cluster $DB_CLUSTER (initdb)"
  done_ok New "database $DB_CLUSTER is new (no backups at s3://$BUCKET/$ARCHIVE): created empty"
}

# --- volume ---------------------------------------------------------------------------------------

write_marker() {
  printf 'written by the hkgen restore gate on %s: volume %s/%s exists and is backed up\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NAMESPACE" "$PVC" |
    aws s3 cp - "s3://$BUCKET/$MARKER" --only-show-errors
}

# The backup to restore: "name<TAB>created<TAB>url<TAB>size". Longhorn's recurring backups carry the
# volume's KubernetesStatus (pvName, pvStatus, namespace, pvcName, ...) as JSON in status.labels,
# also after a rebuild, when they are synced back from the target; that finds this PVC's backups
# and their Longhorn volume. Which one is the latest is what Longhorn itself names in the volume's
# BackupVolume (status.lastBackupName), not the newest "Completed" of a listing that may still be
# syncing after a rebuild. Prints nothing when the PVC has no completed backup; exit 1 on an API
# error, exit 3 while Longhorn has not named (or not yet listed) the latest backup.
latest_backup() {
  all=$(kubectl -n "$LONGHORN_NAMESPACE" get backups.longhorn.io -l "backup-target=$BACKUP_TARGET" -o \
    'jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.state}{"\t"}{.status.snapshotCreatedAt}{"\t"}{.status.url}{"\t"}{.status.volumeSize}{"\t"}{.status.labels.KubernetesStatus}{"\t"}{.status.volumeName}{"\n"}{end}') ||
    return 1
  mine=$(printf '%s\n' "$all" | grep -F "\"namespace\":\"$NAMESPACE\",\"pvcName\":\"$PVC\"" |
    awk -F "$tab" '$2 == "Completed"')
  [ -n "$mine" ] || return 0
  # The Longhorn volume of this PVC's newest backup (an older incarnation had another volume).
  volume_of=$(printf '%s\n' "$mine" | sort -t "$tab" -k3,3 | tail -n 1 | cut -f7)
  volumes=$(kubectl -n "$LONGHORN_NAMESPACE" get backupvolumes.longhorn.io -l "backup-target=$BACKUP_TARGET" -o \
    'jsonpath={range .items[*]}{.metadata.name}{"\t"}{.spec.volumeName}{"\t"}{.status.lastBackupName}{"\n"}{end}') ||
    return 1
  last=$(printf '%s\n' "$volumes" | awk -F "$tab" -v v="$volume_of" '$2 == v || $1 == v { print $3; exit }')
  if [ -z "$last" ]; then
    log "Longhorn names no latest backup for volume $volume_of yet (its BackupVolume is not synced)" >&2
    return 3
  fi
  chosen=$(printf '%s\n' "$mine" | awk -F "$tab" -v b="$last" '$1 == b { print $1 "\t" $3 "\t" $4 "\t" $5 }')
  if [ -z "$chosen" ]; then
    log "Longhorn names $last the latest backup of volume $volume_of, but it is not listed as completed yet" >&2
    return 3
  fi
  printf '%s\n' "$chosen"
}

create_volume() {
  kubectl create -f - <<EOF
apiVersion: longhorn.io/v1beta2
kind: Volume
metadata:
  name: "$1"
  namespace: "$LONGHORN_NAMESPACE"
  labels:
    app.kubernetes.io/managed-by: hkgen
    recurring-job-group.longhorn.io/$RECURRING_GROUP: enabled
spec:
  fromBackup: "$2"
  size: "$3"
  numberOfReplicas: $REPLICAS
  staleReplicaTimeout: 2880
  frontend: blockdev
  dataEngine: v1
  accessMode: rwo
  backupTargetName: "$BACKUP_TARGET"
EOF
}

wait_restored() {
  waited=0
  while :; do
    state=$(kubectl -n "$LONGHORN_NAMESPACE" get volumes.longhorn.io "$1" -o \
      'jsonpath={.status.restoreInitiated} {.status.restoreRequired} {.status.state} {.status.robustness}') ||
      return 1
    log "volume $1: restoreInitiated restoreRequired state robustness = $state"
    case "$state" in
      "true false detached "*) return 0 ;;
      *" faulted") record Warning RestoreFaulted "Longhorn volume $1 is faulted while restoring"; return 1 ;;
    esac
    if [ "$waited" -ge "$RESTORE_TIMEOUT" ]; then
      record Warning RestoreSlow "volume $1 not restored after $RESTORE_TIMEOUT seconds; the next attempt keeps waiting"
      return 1
    fi
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
  done
}

# What Longhorn's "Create PV/PVC" does: a PV on the CSI driver with the volume as its handle, and
# the claim with the app's name bound to it (the StatefulSet then adopts the claim).
create_pv() {  # $1: Longhorn volume, $2: size; the PV is called $VOLUME_PREFIX (the held claim's volumeName)
  kubectl create -f - <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: "$VOLUME_PREFIX"
  labels:
    app.kubernetes.io/managed-by: hkgen
spec:
  capacity:
    storage: "$2"
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  volumeMode: Filesystem
  storageClassName: "$STORAGE_CLASS"
  claimRef:
    namespace: "$NAMESPACE"
    name: "$PVC"
  csi:
    driver: driver.longhorn.io
    fsType: ext4
    volumeHandle: "$1"
    volumeAttributes:
      numberOfReplicas: "$REPLICAS"
      staleReplicaTimeout: "2880"
EOF
}

# The claim with the app's name, held: bound to the PV name $VOLUME_PREFIX, which exists only once
# the restore is done (the StatefulSet adopts the claim; its pod waits, nothing is provisioned).
create_held_pvc() {  # $1: size
  kubectl create -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: "$PVC"
  namespace: "$NAMESPACE"
  labels:
    app.kubernetes.io/managed-by: hkgen
    hkgen.io/held: "true"
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: "$STORAGE_CLASS"
  volumeName: "$VOLUME_PREFIX"
  resources:
    requests:
      storage: "$1"
EOF
}

# "yes" or "no": whether this volume's marker is in the bucket. Fails when the bucket cannot be
# listed: an unreachable target must never read as "no marker".
marker_exists() {
  keys=$(s3_keys "$MARKER") || return 1
  if printf '%s\n' "$keys" | grep -F -x -q "$MARKER"; then echo yes; else echo no; fi
}

gate_volume() {
  claim=$(kubectl -n "$NAMESPACE" get persistentvolumeclaim "$PVC" --ignore-not-found -o \
    'jsonpath={.metadata.name}{"\t"}{.metadata.labels.hkgen\.io/held}') ||
    fail ApiError "cannot read PVC $PVC from the Kubernetes API"
  held=no
  case $claim in
    "") ;;
    *"${tab}true") held=yes ;;
    *)
      # Without its marker a rebuild would take this volume for a new one and start the app empty
      # although backups of it exist: make sure the marker is there.
      if ! have_marker=$(marker_exists); then
        log "warning: cannot read s3://$BUCKET/$MARKER; the next run checks again"
        done_ok Present "PVC $PVC exists; nothing to restore (its marker could not be checked: S3 unreachable)"
      fi
      if [ "$have_marker" = no ]; then
        if ! write_marker; then
          log "warning: cannot write s3://$BUCKET/$MARKER; the next run tries again"
          done_ok Present "PVC $PVC exists; nothing to restore (its marker could not be written: S3 unreachable)"
        fi
        done_ok Present "PVC $PVC exists; nothing to restore; marker written, so a rebuild restores it"
      fi
      done_ok Present "PVC $PVC exists; nothing to restore"
      ;;
  esac
  have_marker=$(marker_exists) ||
    fail TargetUnreachable "cannot read s3://$BUCKET/$MARKER, so whether $PVC existed before is unknown; see the log above"
  if [ "$have_marker" = no ]; then
    write_marker || fail TargetUnreachable "cannot write the marker s3://$BUCKET/$MARKER"
    if [ "$held" = yes ]; then
      # Held for a restore, then its marker was deleted on purpose: the app starts empty. The
      # waiting pod goes too, so the StatefulSet makes both again, with a new volume.
      kubectl -n "$NAMESPACE" delete persistentvolumeclaim "$PVC" --wait=false >/dev/null ||
        fail ApiError "cannot release the held PVC $PVC"
      kubectl -n "$NAMESPACE" delete pod "$POD" --ignore-not-found >/dev/null ||
        log "warning: could not delete pod $POD; it starts once it is deleted"
      done_ok New "PVC $PVC released: its marker is gone, so the app creates an empty volume"
    fi
    done_ok New "PVC $PVC never existed: marker written, the app creates an empty volume"
  fi
  log "PVC $PVC existed before (marker s3://$BUCKET/$MARKER): restoring it from its latest backup"
  target=$(kubectl -n "$LONGHORN_NAMESPACE" get backuptargets.longhorn.io "$BACKUP_TARGET" -o \
    'jsonpath={.status.available}{"\t"}{.status.lastSyncedAt}{"\t"}{.status.conditions[*].message}') || target=''
  backup='' reason='' why=''
  if [ -z "$target" ]; then
    reason=TargetUnreachable why="Longhorn backup target $BACKUP_TARGET is not there yet"
  elif [ "$(printf '%s' "$target" | cut -f1)" != "true" ]; then
    reason=TargetUnreachable
    why="Longhorn backup target $BACKUP_TARGET is not available: $(printf '%s' "$target" | cut -f3)"
  elif [ -z "$(printf '%s' "$target" | cut -f2)" ]; then
    reason=NotSynced why="Longhorn has not read the backup target $BACKUP_TARGET yet; waiting for its first sync"
  else
    backup=$(latest_backup)
    case $? in
      0)
        if [ -z "$backup" ]; then
          reason=NoBackup
          why="PVC $PVC existed before but Longhorn finds no completed backup of it on target $BACKUP_TARGET"
        fi
        ;;
      3)
        reason=NotSynced
        why="Longhorn is still syncing the backups of $PVC from target $BACKUP_TARGET; waiting for it to name the latest one"
        ;;
      *) reason=ApiError why="cannot list Longhorn backups" ;;
    esac
  fi
  name=$(printf '%s' "$backup" | cut -f1)
  created=$(printf '%s' "$backup" | cut -f2)
  url=$(printf '%s' "$backup" | cut -f3)
  size=$(printf '%s' "$backup" | cut -f4)
  if [ "$held" = no ]; then
    # The claim first, so the StatefulSet adopts it instead of provisioning an empty volume.
    create_held_pvc "${size:-1Gi}" || fail ApiError "cannot create the held PVC $PVC"
  fi
  [ -z "$reason" ] || hold "$reason" "$why"
  volume="$VOLUME_PREFIX-${name#backup-}"
  log "latest backup of $PVC: $name (snapshot of $created, $size bytes) -> Longhorn volume $volume"
  have=$(kubectl -n "$LONGHORN_NAMESPACE" get volumes.longhorn.io "$volume" --ignore-not-found -o name) ||
    hold ApiError "cannot read Longhorn volume $volume"
  if [ -z "$have" ]; then
    create_volume "$volume" "$url" "$size" || hold RestoreFailed "cannot create Longhorn volume $volume from $url"
  fi
  wait_restored "$volume" || hold RestoreFailed "Longhorn volume $volume is not restored yet"
  phase=$(kubectl get persistentvolume "$VOLUME_PREFIX" --ignore-not-found -o 'jsonpath={.status.phase}') ||
    hold ApiError "cannot read PV $VOLUME_PREFIX"
  if [ -z "$phase" ]; then
    create_pv "$volume" "$size" || hold RestoreFailed "cannot create PV $VOLUME_PREFIX"
  elif [ "$phase" = "Released" ]; then
    # Left by an earlier claim of the same name: free it for the new one.
    kubectl patch persistentvolume "$VOLUME_PREFIX" --type json \
      -p '[{"op":"remove","path":"/spec/claimRef/uid"},{"op":"remove","path":"/spec/claimRef/resourceVersion"}]' ||
      hold RestoreFailed "cannot release PV $VOLUME_PREFIX for $PVC"
  fi
  kubectl -n "$NAMESPACE" label persistentvolumeclaim "$PVC" hkgen.io/held- "hkgen.io/restored-from=$name" \
    --overwrite >/dev/null || log "warning: could not mark PVC $PVC restored"
  done_ok Restored "PVC $PVC restored from backup $name (snapshot of $created) into volume $volume"
}

case "${GATE_KIND:-}" in
  volume) gate_volume ;;
  database) gate_database ;;
  *) log "ERROR: GATE_KIND must be volume or database"; exit 2 ;;
esac
