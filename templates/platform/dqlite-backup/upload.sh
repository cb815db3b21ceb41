#!/bin/sh
# hkgen dqlite uploader: copies the datastore archives the node's hkgen-dqlite-backup timer wrote
# (read-only host folder; age-encrypted to the cluster's recipients) to s3://BUCKET/DEST (one folder
# per control plane) and keeps the newest KEEP there. Unencrypted archives an older hkgen uploaded
# are deleted once an encrypted one is there: they hold every Secret of the cluster in clear.
# Needs aws (AWS CLI v2); credentials, region and endpoint from the AWS_* variables.
# Settings (environment): SOURCE, BUCKET, DEST (key prefix ending in /), KEEP.
set -eu

listing() {
  keys=$(aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$DEST" --query 'Contents[].Key' --output text)
  printf '%s\n' "$keys" | tr '\t' '\n'
}

remote() {
  listing | grep -E '/dqlite-[^/]*\.tar\.gz\.age$' || true
}

present=$(remote)
uploaded=0
for path in "$SOURCE"/dqlite-*.tar.gz.age; do
  [ -f "$path" ] || continue
  name=${path##*/}
  if printf '%s\n' "$present" | grep -F -x -q "$DEST$name"; then
    continue
  fi
  aws s3 cp "$path" "s3://$BUCKET/$DEST$name" --only-show-errors
  echo "uploaded $name"
  uploaded=$((uploaded + 1))
done
[ "$uploaded" -gt 0 ] || echo "nothing new in $SOURCE"

# Retention: archive names sort by time, so everything before the newest KEEP goes.
remote | sort -r | tail -n +"$((KEEP + 1))" | while read -r key; do
  aws s3 rm "s3://$BUCKET/$key" --only-show-errors
  echo "removed $key"
done

# Plain archives from before encryption: gone as soon as an encrypted one is in the bucket.
if [ -n "$(remote)" ]; then
  listing | grep -E '/dqlite-[^/]*\.tar\.gz$' | while read -r key; do
    aws s3 rm "s3://$BUCKET/$key" --only-show-errors
    echo "removed unencrypted $key"
  done
fi
