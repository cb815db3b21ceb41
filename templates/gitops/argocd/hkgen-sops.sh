# hkgen-sops: Argo CD config management plugin of hkgen (generate command, run by `sh -c`).
# Builds the Application's folder with kustomize and substitutes every placeholder $ + {KEY} with the
# value of KEY from the cluster's SOPS-encrypted secrets file, exactly as Flux's postBuild
# substitution does: objects annotated kustomize.toolkit.fluxcd.io/substitute: disabled are left
# alone, and a key the secrets file lacks becomes an empty string.
# Needs: sops (age key in $SOPS_AGE_KEY_FILE), kustomize (or kubectl), awk, and the plugin env
# HKGEN_SECRETS (path of the secrets file from the repository root).
set -eu
secrets="${ARGOCD_ENV_HKGEN_SECRETS:?the Application must set plugin env HKGEN_SECRETS}"
root=$(pwd)
case "$root" in
  */"${ARGOCD_APP_SOURCE_PATH:-.}") root=${root%/"$ARGOCD_APP_SOURCE_PATH"} ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sops --decrypt --extract '["stringData"]' --output-type dotenv "$root/$secrets" > "$work/values"
if command -v kustomize >/dev/null 2>&1; then
  kustomize build . > "$work/objects"
else
  kubectl kustomize . > "$work/objects"
fi
awk '
FILENAME == ARGV[1] {
  i = index($0, "=")
  if (i > 1) value[substr($0, 1, i - 1)] = substr($0, i + 1)
  next
}
function flush(   text, out, s, rest, e) {
  if (doc == "") return
  if (index(doc, "kustomize.toolkit.fluxcd.io/substitute: disabled") == 0) {
    text = doc
    out = ""
    while ((s = index(text, "${")) > 0) {
      rest = substr(text, s + 2)
      e = index(rest, "}")
      if (e == 0) break
      out = out substr(text, 1, s - 1) value[substr(rest, 1, e - 1)]
      text = substr(rest, e + 1)
    }
    doc = out text
  }
  printf "%s", doc
  doc = ""
}
/^---$/ { flush(); print; next }
{ doc = doc $0 "\n" }
END { flush() }
' "$work/values" "$work/objects"
