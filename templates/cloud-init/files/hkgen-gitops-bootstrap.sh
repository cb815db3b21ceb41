#!/bin/bash
# hkgen-gitops-bootstrap [CONFIG]: install the cluster's GitOps engine, once, from any control
# plane. Written by hkgen; a systemd timer runs it at every boot and every few minutes after.
#
# It applies only what is missing, in this order: the engine's namespace, the age key Secret
# `sops-age`, the Git credentials (SSH repositories only), the engine (downloaded and checked:
# Flux by its pinned sha256, the Argo CD chart by its publisher's signature, the way `helm verify`
# does; refused on any mismatch) and the objects by which the engine then manages itself and the
# cluster from Git. With all of them present it does nothing: a running engine is
# never touched (power cut, reboot, a reflashed control plane joining a live cluster).
#
# Any control plane may do it (the first one may be the dead one). Several control planes booting
# together race for a ConfigMap lock created with `kubectl create` (the API server lets exactly one
# create succeed); the others retry later and then find everything present.
#
# Secrets come only from the boot media: `hkgen boot-media` writes the age key (and the deploy key
# of an SSH repository) into hkgen/ on a control plane's boot partition. The first run moves them
# to a root-only folder on the root filesystem and deletes them from the boot partition, which is
# FAT (no file modes: every local user can read it) and is the part of the card a person handles.
# The root-only copy stays, so a later boot can re-create a deleted Secret without a person.
#
# Exit status: 0 when the engine has everything it needs, 75 to be run again (not joined yet, API
# not ready, a secret or download missing, another control plane holds the lock), 1 on a bad
# configuration.
set -u

conf=${1:-/etc/hkgen/gitops/bootstrap.conf}
# Settings; the configuration file sets them all.
engine='' namespace='' joined_file='' microk8s='' curl='' ssh_keyscan='' boot_secrets='' secrets_dir=''
sync_file='' sync_probe='' engine_probe='' repo_url='' repo_ssh='' git_secret='' git_secret_labels=''
flux_cli_url='' flux_cli_sha256='' manifest_sha256='' chart_url='' chart_values=''
chart_release='' lock_namespace='kube-system' lock_name='hkgen-gitops-bootstrap' lock_stale_seconds=900
chart_prov_url='' chart_name='' chart_version='' chart_key_url='' chart_key_fingerprint='' gpg='' gpgv=''
crd_names=''
# shellcheck source=/dev/null
. "$conf"

log() { echo "hkgen-gitops-bootstrap: $*"; }
error() { echo "hkgen-gitops-bootstrap: error: $*" >&2; }
k() { "$microk8s" kubectl "$@"; }

case $engine in
    flux | argocd) ;;
    *)
        error "$conf: engine must be flux or argocd"
        exit 1
        ;;
esac

if [ ! -e "$joined_file" ]; then
    log "this node is not a cluster member yet; will retry"
    exit 75
fi
if ! k get --raw /readyz >/dev/null 2>&1; then
    log "the API server does not answer yet; will retry"
    exit 75
fi

# --- secrets from the boot media -----------------------------------------------------------------
age_key=$secrets_dir/age.agekey
deploy_key=$secrets_dir/deploy-key
import_boot_secrets() {
    local name
    for name in age.agekey deploy-key; do
        [ -f "$boot_secrets/$name" ] || continue
        install -d -m 0700 "$secrets_dir" || return 1
        install -m 0600 "$boot_secrets/$name" "$secrets_dir/.$name.new" || return 1
        sync
        mv -f "$secrets_dir/.$name.new" "$secrets_dir/$name" || return 1
        rm -f "$boot_secrets/$name" && log "moved $name from the boot partition to $secrets_dir (root only)"
    done
    rmdir "$boot_secrets" 2>/dev/null || true
}
if ! import_boot_secrets; then
    error "could not move the secrets from $boot_secrets to $secrets_dir; will retry"
    exit 75
fi

# --- what is there -------------------------------------------------------------------------------
# `kubectl get` exits 1 both for "not found" and for an API error: only NotFound counts as missing,
# anything else means "do not know" and the run is retried (never applied on a guess).
state=''
probe() {  # $1: what to get (kind/name), $2: namespace or ''; sets state to present, missing or unknown
    local out
    local -a ns=()
    [ -n "$2" ] && ns=(-n "$2")
    if out=$(k get "$1" "${ns[@]}" -o name 2>&1); then
        state=present
    elif printf '%s\n' "$out" | grep -q -e '(NotFound)' -e "doesn't have a resource type"; then
        state=missing  # the object, or its CRD (the engine is not installed)
    else
        state=unknown
        log "could not read $1: $(printf '%s\n' "$out" | tail -n 1)"
    fi
}

missing=()
survey() {
    missing=()
    local item
    local -a items=("namespace/$namespace|" "secret/sops-age|$namespace")
    [ "$repo_ssh" = yes ] && items+=("secret/$git_secret|$namespace")
    items+=("$engine_probe|$namespace" "$sync_probe|$namespace")
    for item in "${items[@]}"; do
        probe "${item%%|*}" "${item#*|}"
        case $state in
            present) ;;
            missing) missing+=("${item%%|*}") ;;
            *) return 1 ;;
        esac
    done
}
is_missing() {
    local m
    for m in "${missing[@]}"; do [ "$m" = "$1" ] && return 0; done
    return 1
}

if ! survey; then
    log "the API server did not answer every question; will retry"
    exit 75
fi
if [ -z "${missing[*]}" ]; then
    log "the $engine engine is installed and has its secrets: nothing to do"
    exit 0
fi
log "missing: ${missing[*]}"

# --- everything needed must be at hand before anything is applied ---------------------------------
if is_missing secret/sops-age && [ ! -s "$age_key" ]; then
    error "no age key: the Secret sops-age is missing and neither $boot_secrets/age.agekey nor $age_key exists." \
        "Write this control plane's boot media with 'hkgen boot-media' (it adds the age key), or let another" \
        "control plane do it. Nothing was applied; will retry"
    exit 75
fi
if is_missing "secret/$git_secret" && [ ! -s "$deploy_key" ]; then
    error "no deploy key for $repo_url: write this control plane's boot media with 'hkgen boot-media'." \
        "Nothing was applied; will retry"
    exit 75
fi

work=$(mktemp -d /run/hkgen-gitops.XXXXXX) || exit 75
lock_held=0
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    [ "$lock_held" = 1 ] && k -n "$lock_namespace" delete configmap "$lock_name" --ignore-not-found >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

sha_ok() {  # $1: file, $2: expected sha256, $3: what it is
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [ -z "$2" ]; then
        error "$3: no sha256 is pinned for it; refusing to install an unverified download"
        return 1
    fi
    if [ "$got" != "$2" ]; then
        error "$3: sha256 $got is not the pinned $2; refusing it"
        return 1
    fi
}

fetch() {  # $1: URL, $2: destination
    "$curl" --fail --silent --show-error --location --proto '=https' --retry 3 --max-time 600 -o "$2" "$1"
}

# The argo-cd chart, checked the way `helm verify` does (Helm's pkg/provenance). argo-helm signs
# every chart it publishes: next to argo-cd-<v>.tgz each release has argo-cd-<v>.tgz.prov, a PGP
# clear-signed text made of the chart's Chart.yaml, a line `...`, and YAML `files:` mapping the
# archive's file name to `sha256:<hex>`. The chart is accepted only when that text is signed by
# the pinned key and names the pinned chart, version and the downloaded archive's sha256.
chart_verified() {  # $1: archive, $2: provenance file, $3: key file (all downloaded)
    local home=$work/gnupg archive="$chart_name-$chart_version.tgz" keys status signed sums crc got name version
    local -a g=("$gpg" --homedir "$home" --batch --no-autostart)
    # A throwaway GNUPGHOME under $work; public keys need no gpg-agent (`--import` would start one)
    # and an empty common.conf keeps GnuPG 2.4 from switching a new home to keyboxd.
    install -d -m 0700 "$home" "$home/v" && : >"$home/common.conf" || return 1
    # 1. The key file must hold the pinned primary key; the keyring gpgv trusts is that key alone
    #    (other keys in the file, or the signer's own claims, never count).
    keys=$("${g[@]}" --with-colons --show-keys "$3" 2>/dev/null |
        awk -F: '$1 == "pub" { primary = 1; next } $1 == "fpr" && primary { print $10; primary = 0 }')
    if ! printf '%s\n' "$keys" | grep -qx "$chart_key_fingerprint"; then
        error "$chart_key_url holds no key with the pinned fingerprint $chart_key_fingerprint" \
            "(it has: ${keys//$'\n'/ }); refusing the chart"
        return 1
    fi
    if ! { "${g[@]}" --quiet --import "$3" 2>/dev/null &&
        "${g[@]}" --export "$chart_key_fingerprint" >"$work/chart-keyring.gpg" 2>/dev/null; }; then
        error "could not read the key $chart_key_fingerprint from $chart_key_url; refusing the chart"
        return 1
    fi
    # 2. Helm's Go OpenPGP library writes the signature's armor without a CRC line; GnuPG with bug
    #    T7071 (dev.gnupg.org; 2.2.40 has it) cannot end such armor when the base64 has no padding
    #    either. The CRC is optional (RFC 9580): one is added, computed by gpg over the same bytes.
    if ! sed -n '/^-----BEGIN PGP SIGNATURE-----$/,/^-----END PGP SIGNATURE-----$/p' "$2" | grep -q '^='; then
        crc=$(sed -n '/^-----BEGIN PGP SIGNATURE-----$/,/^-----END PGP SIGNATURE-----$/p' "$2" | sed '1,/^$/d;$d' |
            base64 -d 2>/dev/null | "${g[@]}" --enarmor 2>/dev/null | grep -m1 '^=')
        [ -n "$crc" ] && sed -i "s|^-----END PGP SIGNATURE-----\$|$crc\n&|" "$2"
    fi
    # 3. The signature: gpgv against that keyring only, a good and valid signature whose primary key
    #    is the pinned one (VALIDSIG's last field). Only the text gpgv writes out is read below:
    #    anything around the signed block in the downloaded file does not count.
    status=$work/gpgv.status
    signed=$work/chart.prov.signed
    if ! "$gpgv" --homedir "$home/v" --keyring "$work/chart-keyring.gpg" --status-fd 3 --output "$signed" "$2" \
        3>"$status" 2>"$work/gpgv.log" ||
        grep -qE '^\[GNUPG:\] (BADSIG|ERRSIG|EXPSIG|EXPKEYSIG|REVKEYSIG) ' "$status" ||
        ! grep -q '^\[GNUPG:\] GOODSIG ' "$status" ||
        ! awk -v want="$chart_key_fingerprint" '$1 == "[GNUPG:]" && $2 == "VALIDSIG" && $12 == want { ok = 1 }
            END { exit !ok }' "$status"; then
        error "$chart_prov_url is not signed by the pinned key $chart_key_fingerprint" \
            "($(grep -v '^gpgv: \(Signature made\|  *using\)' "$work/gpgv.log" | tail -n 1)); refusing the chart"
        return 1
    fi
    # 4. The signed text, as Helm reads it: Chart.yaml before the first `...` line, the sums after it.
    name=$(awk '/^\.\.\.$/ { exit } /^name:/ { sub(/^name: */, ""); gsub(/^["'\'']|["'\'']$/, ""); print }' "$signed")
    version=$(awk '/^\.\.\.$/ { exit } /^version:/ { sub(/^version: */, ""); gsub(/^["'\'']|["'\'']$/, ""); print }' "$signed")
    if [ "$name" != "$chart_name" ] || [ "$version" != "$chart_version" ]; then
        error "$chart_prov_url is signed for chart '$name' version '$version', not the pinned" \
            "$chart_name $chart_version; refusing the chart"
        return 1
    fi
    sums=$(awk -v want="$archive" '
        /^\.\.\.$/ { part++; next }
        part != 1 { next }
        /^[^ ]/ { files = ($0 == "files:"); next }
        files {
            line = $0; sub(/^ +/, "", line)
            i = index(line, ": "); key = substr(line, 1, i - 1); value = substr(line, i + 2)
            gsub(/^["'\'']|["'\'']$/, "", key); gsub(/^["'\'']|["'\'']$/, "", value)
            if (i && key == want) print value
        }' "$signed")
    if [ "$(printf '%s\n' "$sums" | grep -c .)" != 1 ] || ! printf '%s\n' "$sums" | grep -qxE 'sha256:[0-9a-f]{64}'; then
        error "$chart_prov_url names no single sha256 for $archive; refusing the chart"
        return 1
    fi
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "sha256:$got" != "$sums" ]; then
        error "$chart_url: sha256 $got is not the $sums its signed provenance names; refusing it"
        return 1
    fi
    log "$chart_url: signed by $chart_key_fingerprint, sha256 $got (verified like helm verify)"
}

engine_file=$work/engine.yaml
prepare_engine() {  # downloads and checks the engine's manifests into $engine_file
    if [ "$engine" = flux ]; then
        # The manifests `flux bootstrap` installs are `flux install --export` of the pinned CLI (the
        # release's install.yaml differs: it adds the image controllers and names RBAC otherwise).
        # Both the CLI archive and the manifests it writes are checked against their pins.
        fetch "$flux_cli_url" "$work/flux.tar.gz" || { error "could not download $flux_cli_url"; return 1; }
        sha_ok "$work/flux.tar.gz" "$flux_cli_sha256" "$flux_cli_url" || return 1
        tar -xzf "$work/flux.tar.gz" -C "$work" flux || { error "$flux_cli_url holds no flux binary"; return 1; }
        "$work/flux" install --export >"$engine_file" || { error "flux install --export failed"; return 1; }
        sha_ok "$engine_file" "$manifest_sha256" "the manifests of flux install --export" || return 1
    else
        local url
        for url in "$chart_url|chart.tgz" "$chart_prov_url|chart.tgz.prov" "$chart_key_url|chart-key.asc"; do
            fetch "${url%|*}" "$work/${url#*|}" || { error "could not download ${url%|*}"; return 1; }
        done
        chart_verified "$work/chart.tgz" "$work/chart.tgz.prov" "$work/chart-key.asc" || return 1
        "$microk8s" helm template "$chart_release" "$work/chart.tgz" --namespace "$namespace" --include-crds \
            -f "$chart_values" >"$engine_file" || { error "helm template of $chart_url failed"; return 1; }
    fi
}

git_known_hosts=$work/known_hosts
prepare_git() {  # host keys of an SSH repository (what `flux bootstrap` records too)
    local hostport host port
    hostport=${repo_url#ssh://}
    hostport=${hostport#*@}
    hostport=${hostport%%/*}
    host=${hostport%%:*}
    port=22
    [ "$hostport" != "$host" ] && port=${hostport#*:}
    "$ssh_keyscan" -p "$port" "$host" >"$git_known_hosts" 2>/dev/null
    if [ ! -s "$git_known_hosts" ]; then
        error "could not read the SSH host keys of $host:$port"
        return 1
    fi
    if [ "$port" != 22 ]; then
        sed -i "s/^$host /[$host]:$port /" "$git_known_hosts"
    fi
}

if is_missing "$engine_probe" && ! prepare_engine; then
    log "nothing was applied; will retry"
    exit 75
fi
if is_missing "secret/$git_secret" && ! prepare_git; then
    log "nothing was applied; will retry"
    exit 75
fi

# --- one control plane at a time ------------------------------------------------------------------
take_lock() {
    local out age now since
    if out=$(k -n "$lock_namespace" create configmap "$lock_name" --from-literal=holder="$(hostname)" \
        --from-literal=since="$(date -u +%s)" 2>&1); then
        lock_held=1
        return 0
    fi
    if ! printf '%s\n' "$out" | grep -q '(AlreadyExists)'; then
        log "could not take the lock: $(printf '%s\n' "$out" | tail -n 1)"
        return 1
    fi
    since=$(k -n "$lock_namespace" get configmap "$lock_name" -o 'jsonpath={.data.since}' 2>/dev/null)
    now=$(date -u +%s)
    age=$((now - ${since:-$now}))
    if [ "$age" -gt "$lock_stale_seconds" ]; then
        # Its holder died half-way (power cut): delete the lock; the next run races for it again.
        log "the lock is ${age}s old: removing it"
        k -n "$lock_namespace" delete configmap "$lock_name" --ignore-not-found >/dev/null 2>&1
    else
        log "another control plane ($(k -n "$lock_namespace" get configmap "$lock_name" \
            -o 'jsonpath={.data.holder}' 2>/dev/null)) is installing the engine"
    fi
    return 1
}
if ! take_lock; then
    log "will retry"
    exit 75
fi
# Another control plane may have finished between the survey and the lock.
if ! survey; then
    log "the API server did not answer every question; will retry"
    exit 75
fi

# --- apply ----------------------------------------------------------------------------------------
create_secret() {  # $1: name, $2: labels (k=v,...), then key=file pairs; AlreadyExists counts as done
    local name=$1 labels=$2 manifest=$work/secret-$1.yaml out pair key
    shift 2
    umask 077
    {
        printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n' "$name" "$namespace"
        if [ -n "$labels" ]; then
            printf '  labels:\n'
            printf '%s\n' "$labels" | tr ',' '\n' | sed 's/^\([^=]*\)=\(.*\)$/    \1: "\2"/'
        fi
        printf 'type: Opaque\ndata:\n'
        for pair in "$@"; do
            key=${pair%%=*}
            printf '  %s: %s\n' "$key" "$(base64 -w0 <"${pair#*=}")"
        done
    } >"$manifest"
    if out=$(k create -f "$manifest" 2>&1) || printf '%s\n' "$out" | grep -q '(AlreadyExists)'; then
        rm -f "$manifest"
        log "created Secret $namespace/$name"
        return 0
    fi
    rm -f "$manifest"
    error "could not create Secret $namespace/$name: $(printf '%s\n' "$out" | tail -n 1)"
    return 1
}

apply() {  # $1: manifest file, $2: what it is
    if k apply --server-side --force-conflicts --field-manager=hkgen-bootstrap -f "$1" >/dev/null; then
        log "applied $2"
        return 0
    fi
    error "could not apply $2"
    return 1
}

failed=0
if is_missing "namespace/$namespace"; then
    out=$(k create namespace "$namespace" 2>&1) || printf '%s\n' "$out" | grep -q '(AlreadyExists)' || failed=1
fi
if [ "$failed" = 0 ] && is_missing secret/sops-age; then
    create_secret sops-age '' "age.agekey=$age_key" || failed=1
fi
if [ "$failed" = 0 ] && is_missing "secret/$git_secret"; then
    if [ "$engine" = flux ]; then
        create_secret "$git_secret" "$git_secret_labels" "identity=$deploy_key" "known_hosts=$git_known_hosts" || failed=1
    else
        printf '%s' "$repo_url" >"$work/url"
        printf 'git' >"$work/type"
        create_secret "$git_secret" "$git_secret_labels" "url=$work/url" "type=$work/type" \
            "sshPrivateKey=$deploy_key" || failed=1
    fi
fi
if [ "$failed" = 0 ] && is_missing "$engine_probe"; then
    apply "$engine_file" "the $engine engine" || failed=1
fi
if [ "$failed" = 0 ] && is_missing "$sync_probe"; then
    # The engine's own objects need its CRDs served first.
    for crd in $crd_names; do
        k wait --for condition=established --timeout=120s "crd/$crd" >/dev/null || failed=1
    done
    [ "$failed" = 0 ] && { apply "$sync_file" "the objects by which the engine manages itself from Git" || failed=1; }
fi
if [ "$failed" != 0 ]; then
    log "not finished; will retry (everything applied so far is kept and not applied again)"
    exit 75
fi
log "the $engine engine is installed; it takes over from Git"
exit 0
