#!/bin/sh
# hkgen: back up the MicroK8s datastore (dqlite) of this control plane into a local folder, keeping
# the newest few archives. `microk8s dbctl backup -o NAME` writes NAME.tar.gz in the current
# folder; it is written under a temporary name and renamed when complete, so the in-cluster
# uploader (hkgen-dqlite-upload CronJob) never sees half an archive.
# Usage: hkgen-dqlite-backup DIR KEEP
set -eu
dir=$1
keep=$2
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
rm -f .partial-*
name="dqlite-$(hostname -s)-$(date -u +%Y%m%dT%H%M%SZ)"
/snap/bin/microk8s dbctl backup -o ".partial-$name"
mv ".partial-$name.tar.gz" "$name.tar.gz"
# Names sort by time: drop all but the newest $keep.
for f in dqlite-*.tar.gz; do [ -f "$f" ] && printf '%s\n' "$f"; done | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
  rm -f -- "$old"
done
echo "hkgen-dqlite-backup: wrote $dir/$name.tar.gz"
