#!/bin/sh
# hkgen: back up the MicroK8s datastore (dqlite) of this control plane into a local folder, keeping
# the newest few archives. The archive holds every Secret of the cluster, so it is encrypted with
# age to the cluster's age recipients (RECIPIENTS, one public key per line) before it gets its
# final name; only the admins' keys can read it. `microk8s dbctl backup -o NAME` writes NAME.tar.gz
# in the current folder; everything is written under temporary names and renamed when complete, so
# the in-cluster uploader (hkgen-dqlite-upload CronJob) never sees half an archive.
# Usage: hkgen-dqlite-backup DIR KEEP RECIPIENTS
set -eu
dir=$1
keep=$2
recipients=$3
microk8s=${HKGEN_MICROK8S:-/snap/bin/microk8s}
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
rm -f .partial-*
trap 'rm -f .partial-*' EXIT  # a failed run leaves no half archive, and no unencrypted one
name="dqlite-$(hostname -s)-$(date -u +%Y%m%dT%H%M%SZ)"
"$microk8s" dbctl backup -o ".partial-$name"
age --encrypt --recipients-file "$recipients" -o ".partial-$name.tar.gz.age" ".partial-$name.tar.gz"
rm -f ".partial-$name.tar.gz"
mv ".partial-$name.tar.gz.age" "$name.tar.gz.age"
# Unencrypted archives (written before hkgen encrypted them) go: they hold every Secret in clear.
rm -f dqlite-*.tar.gz
# Names sort by time: drop all but the newest $keep.
for f in dqlite-*.tar.gz.age; do [ -f "$f" ] && printf '%s\n' "$f"; done | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
  rm -f -- "$old"
done
echo "hkgen-dqlite-backup: wrote $dir/$name.tar.gz.age"
