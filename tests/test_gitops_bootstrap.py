"""hkgen-gitops-bootstrap: the control planes install the GitOps engine themselves.

No Kubernetes cluster can run here (no snapd, no Pi), so `microk8s` is a recording fake on a tmp
PATH: `microk8s kubectl` keeps the cluster's objects in a JSON file and answers the way kubectl
does, failure modes included — `(NotFound)` for an absent object, "the server doesn't have a
resource type" before a CRD exists, `(AlreadyExists)` when a second `create` loses the race (the
file is updated under an exclusive lock, as the API server serialises creates), objects of an
unknown kind refused by `apply`, a namespaced object refused in a missing namespace, the API
server down. `curl` serves local files for the download URLs, and the Flux CLI archive holds a
fake `flux` whose `install --export` writes ../shared/vendor/flux-v2.7.5/gotk-components.yaml,
byte-identical to the real command's output: the pinned sha256 of hkgen's versions.yaml is checked
against that real file. tar, sha256sum, base64, flock and shellcheck are the real tools.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hkgen.areas import bootstrap
from hkgen.config.load import load_file
from hkgen.config.model import Cluster
from hkgen.validation.validate import validate_document

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "templates" / "cloud-init" / "files" / "hkgen-gitops-bootstrap.sh"
SHARED = REPO.parent / "shared"
GOTK = SHARED / "vendor" / "flux-v2.7.5" / "gotk-components.yaml"
AGE_KEY = "AGE-SECRET-KEY-1" + "Q" * 56 + "\n"  # a made-up value, assembled so no line looks like a key
LABEL = "OPENSSH " + "PRIVATE KEY"  # apart, so no line of this file looks like a key to scanners
DEPLOY_KEY = f"-----BEGIN {LABEL}-----\ntest\n-----END {LABEL}-----\n"

FAKE_MICROK8S = r'''#!@PYTHON@
"""Fake `microk8s kubectl`: a JSON object store with kubectl's answers and exit codes."""
import fcntl, json, os, sys, time
import yaml

BUILTIN = {"namespace": ("Namespace", False), "namespaces": ("Namespace", False),
           "secret": ("Secret", True), "secrets": ("Secret", True),
           "configmap": ("ConfigMap", True), "configmaps": ("ConfigMap", True),
           "deployment": ("Deployment", True), "deployments": ("Deployment", True),
           "crd": ("CustomResourceDefinition", False), "customresourcedefinition": ("CustomResourceDefinition", False)}
NAMESPACED_KINDS = {"Secret", "ConfigMap", "Deployment", "Service", "ServiceAccount", "NetworkPolicy",
                    "ResourceQuota", "Role", "RoleBinding", "StatefulSet", "Job"}
CLUSTER_KINDS = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
state_path = os.environ["FAKE_STATE"]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(os.environ.get("FAKE_HOST", "node") + ": microk8s " + " ".join(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if not args or args[0] != "kubectl":
    sys.exit(0)
args = args[1:]
if os.path.exists(os.environ["FAKE_STATE"] + ".down"):
    print("The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?",
          file=sys.stderr)
    sys.exit(1)

lock = open(state_path + ".lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
objects = json.load(open(state_path)) if os.path.exists(state_path) else {}

def save():
    with open(state_path + ".tmp", "w") as f:
        json.dump(objects, f)
    os.replace(state_path + ".tmp", state_path)

def crds():
    return {k: v for k, v in objects.items() if v["kind"] == "CustomResourceDefinition"}

def resolve(resource):
    """(kind, namespaced) of a resource type as kubectl names it, or None (no such type)."""
    if resource in BUILTIN:
        return BUILTIN[resource]
    for crd in crds().values():
        if crd["metadata"]["name"] == resource:
            return crd["spec"]["names"]["kind"], crd["spec"]["scope"] == "Namespaced"
    return None

def key(kind, ns, name):
    return f"{kind}/{ns or ''}/{name}"

ns = None
if "-n" in args:
    i = args.index("-n")
    ns = args[i + 1]
    del args[i:i + 2]
flags = [a for a in args if a.startswith("-")]
words = [a for a in args if not a.startswith("-")]
verb = words[0]

def not_found(kind, name):
    print(f'Error from server (NotFound): {kind.lower()}s "{name}" not found', file=sys.stderr)
    sys.exit(1)

def store(doc, verb):
    kind, name = doc["kind"], doc["metadata"]["name"]
    namespaced = kind in NAMESPACED_KINDS or (kind not in CLUSTER_KINDS and any(
        c["spec"]["names"]["kind"] == kind and c["spec"]["scope"] == "Namespaced" for c in crds().values()))
    if kind not in NAMESPACED_KINDS | CLUSTER_KINDS and not any(
            c["spec"]["names"]["kind"] == kind for c in crds().values()):
        api = doc["apiVersion"]
        return (f'error: resource mapping not found for name: "{name}" namespace: "" from "-": '
                f'no matches for kind "{kind}" in version "{api}"\nensure CRDs are installed first')
    space = (doc["metadata"].get("namespace") or ns) if namespaced else None
    if space and key("Namespace", None, space) not in objects:
        return f'Error from server (NotFound): namespaces "{space}" not found'
    k = key(kind, space, name)
    if verb == "create" and k in objects:
        return f'Error from server (AlreadyExists): {kind.lower()}s "{name}" already exists'
    objects[k] = doc
    return None

if verb == "get" and "--raw" in flags:
    print("ok")
elif verb == "get":
    kind_name = words[1]
    if "/" in kind_name:
        resource, name = kind_name.split("/", 1)
    else:
        resource, name = kind_name, words[2]
    found = resolve(resource)
    if found is None:
        print(f'error: the server doesn\'t have a resource type "{resource}"', file=sys.stderr)
        sys.exit(1)
    kind, namespaced = found
    doc = objects.get(key(kind, ns if namespaced else None, name))
    if doc is None:
        not_found(kind, name)
    out = [a for a in flags if a.startswith("-o") or a.startswith("jsonpath")]
    if "jsonpath={.data.since}" in args:
        print(doc.get("data", {}).get("since", ""), end="")
    elif "jsonpath={.data.holder}" in args:
        print(doc.get("data", {}).get("holder", ""), end="")
    else:
        print(f"{resource}/{name}")
elif verb == "create" and words[1] == "namespace":
    err = store({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": words[2]}}, "create")
    if err:
        print(err, file=sys.stderr); sys.exit(1)
    save()
elif verb == "create" and words[1] == "configmap":
    data = dict(a.split("=", 1)[1].split("=", 1) for a in flags if a.startswith("--from-literal="))
    err = store({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": words[2]}, "data": data}, "create")
    if err:
        print(err, file=sys.stderr); sys.exit(1)
    save()
elif verb == "create" and "-f" in args:
    doc = yaml.safe_load(open(args[args.index("-f") + 1]))
    err = store(doc, "create")
    if err:
        print(err, file=sys.stderr); sys.exit(1)
    save()
elif verb == "delete":
    kind, namespaced = resolve(words[1])
    if objects.pop(key(kind, ns if namespaced else None, words[2]), None) is None and "--ignore-not-found" not in flags:
        not_found(kind, words[2])
    save()
elif verb == "apply":
    if os.path.exists(state_path + ".fail-apply"):
        print("Error from server (InternalError): etcdserver: request timed out", file=sys.stderr)
        sys.exit(1)
    errors = []
    for doc in yaml.safe_load_all(open(args[args.index("-f") + 1])):
        if doc:
            err = store(doc, "apply")
            if err:
                errors.append(err)
    save()
    if errors:
        print("\n".join(errors), file=sys.stderr); sys.exit(1)
elif verb == "wait":
    name = next(w for w in words if w.startswith("crd/")).split("/", 1)[1]
    if key("CustomResourceDefinition", None, name) not in objects:
        not_found("CustomResourceDefinition", name)
else:
    print(f"fake kubectl: unsupported {args}", file=sys.stderr)
    sys.exit(2)
'''

FAKE_CURL = """#!/bin/bash
# Fake curl: serves $FAKE_URLS/<file name of the URL>; records the URL.
echo "$FAKE_HOST: curl ${*: -1}" >>"$FAKE_LOG"
out='' url=''
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        --proto | --retry | --max-time) shift 2 ;;
        -*) shift ;;
        *) url=$1; shift ;;
    esac
done
sleep "${FAKE_CURL_DELAY:-0}"
src=$FAKE_URLS/${url##*/}
[ -f "$src" ] || { echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }
cp "$src" "$out"
"""
FAKE_KEYSCAN = """#!/bin/bash
echo "$FAKE_HOST: ssh-keyscan $*" >>"$FAKE_LOG"
echo "${*: -1} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
"""


def _reference() -> Cluster:
    doc = load_file(REPO / "clusters" / "home" / "cluster.yaml")
    result = validate_document(doc)
    assert result.cluster is not None
    return result.cluster


def _flux_tarball(dest: Path, manifest: Path) -> Path:
    """A CLI archive like flux_<v>_linux_arm64.tar.gz whose `flux install --export` prints `manifest`."""
    body = f'#!/bin/sh\n[ "$1 $2" = "install --export" ] && exec cat {shlex.quote(str(manifest))}\nexit 1\n'.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("flux")
        info.size, info.mode = len(body), 0o755
        tar.addfile(info, io.BytesIO(body))
    dest.write_bytes(buf.getvalue())
    return dest


class World:
    """One cluster (the fake API's state) and the control planes that boot into it."""

    def __init__(self, tmp_path: Path, manifest: Path = GOTK) -> None:
        self.root = tmp_path
        self.cluster = _reference()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, body in (("microk8s", FAKE_MICROK8S.replace("@PYTHON@", sys.executable)),
                           ("curl", FAKE_CURL), ("ssh-keyscan", FAKE_KEYSCAN)):
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)
        self.urls = tmp_path / "urls"
        self.urls.mkdir()
        self.conf = bootstrap.bootstrap_config(self.cluster)
        cli = _flux_tarball(self.urls / self.conf["flux_cli_url"].rsplit("/", 1)[1], manifest)
        # The CLI archive is a stand-in: its own pin is replaced; the manifests pin is hkgen's.
        self.conf["flux_cli_sha256"] = hashlib.sha256(cli.read_bytes()).hexdigest()
        self.state = tmp_path / "cluster.json"
        # A freshly formed MicroK8s cluster: its built-in namespaces and nothing else.
        self.state.write_text(json.dumps({
            f"Namespace//{n}": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in ("default", "kube-system", "kube-public", "kube-node-lease")}))
        self.fresh = self.objects_now()
        self.log = tmp_path / "calls.log"
        self.log.write_text("")
        objects = tmp_path / "engine-objects.yaml"
        objects.write_text(yaml.safe_dump_all(bootstrap.flux_sync_objects(self.cluster)
                                              + bootstrap.flux_engine_objects(self.cluster)))
        self.objects = objects

    def node(self, host: str, *, joined: bool = True, age_key: bool = True, deploy_key: bool = True) -> Path:
        """A freshly flashed control plane: its boot partition holds what `hkgen boot-media` wrote."""
        base = self.root / host
        (base / "boot" / "hkgen").mkdir(parents=True)
        if age_key:
            (base / "boot" / "hkgen" / "age.agekey").write_text(AGE_KEY)
        if deploy_key:
            (base / "boot" / "hkgen" / "deploy-key").write_text(DEPLOY_KEY)
        if joined:
            (base / "joined").write_text("joined\n")
        conf = dict(self.conf) | {
            "joined_file": str(base / "joined"), "microk8s": str(self.bin / "microk8s"),
            "curl": str(self.bin / "curl"), "ssh_keyscan": str(self.bin / "ssh-keyscan"),
            "boot_secrets": str(base / "boot" / "hkgen"), "secrets_dir": str(base / "var-lib-hkgen-gitops"),
            "sync_file": str(self.objects),
        }
        (base / "bootstrap.conf").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items()))
        return base

    def env(self, host: str, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_STATE": str(self.state), "FAKE_LOG": str(self.log),
                "FAKE_URLS": str(self.urls), "FAKE_HOST": host, "TMPDIR": str(self.root), **extra}

    def command(self, host: str) -> list[str]:
        script = self.root / "hkgen-gitops-bootstrap"
        if not script.exists():
            # /run is not writable here: the same script with its work folder under the test's tmp.
            script.write_text(SCRIPT.read_text().replace("mktemp -d /run/hkgen-gitops.XXXXXX",
                                                         f"mktemp -d {self.root}/run.XXXXXX"))
        return ["bash", str(script), str(self.root / host / "bootstrap.conf")]

    def run(self, host: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(host), env=self.env(host, **extra), capture_output=True, text=True,
                              timeout=120)

    def objects_now(self) -> dict[str, Any]:
        return dict(json.loads(self.state.read_text()))

    def calls(self, host: str | None = None) -> list[str]:
        lines = self.log.read_text().splitlines()
        return [line for line in lines if host is None or line.startswith(host + ":")]


def _verb(call: str) -> str:
    """kubectl's verb in a recorded `microk8s kubectl [-n NS] VERB ...` call."""
    words = call.split(" kubectl ", 1)[1].split() if " kubectl " in call else [""]
    return words[2] if words[0] == "-n" else words[0]


def _writes(calls: list[str]) -> list[str]:
    return [c for c in calls if _verb(c) in ("create", "apply", "delete", "replace", "patch")]


def test_script_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "-S", "style", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_pinned_manifest_checksum_is_the_flux_install_export_of_the_pinned_release() -> None:
    cluster = _reference()
    assert cluster.version("engines", "flux") == "v2.7.5"
    assert hashlib.sha256(GOTK.read_bytes()).hexdigest() == cluster.version("engines", "flux-manifests-sha256")


def test_first_boot_installs_the_engine_with_its_secrets(tmp_path: Path) -> None:
    world = World(tmp_path)
    cp1 = world.node("cp1")
    done = world.run("cp1")
    assert done.returncode == 0, done.stdout + done.stderr
    objects = world.objects_now()
    assert "Secret/flux-system/sops-age" in objects and "Secret/flux-system/flux-system" in objects
    age = objects["Secret/flux-system/sops-age"]["data"]["age.agekey"]
    import base64

    assert base64.b64decode(age).decode() == AGE_KEY
    identity = objects["Secret/flux-system/flux-system"]["data"]
    assert set(identity) == {"identity", "known_hosts"}
    assert base64.b64decode(identity["known_hosts"]).decode().startswith("github.com ssh-ed25519 ")
    # The four controllers of `flux install --export`, then the objects that manage Flux from Git.
    assert {k for k in objects if k.startswith("Deployment/")} == {
        f"Deployment/flux-system/{c}-controller" for c in ("source", "kustomize", "helm", "notification")}
    assert "Kustomization/flux-system/flux-system" in objects and "OCIRepository/flux-system/flux-engine" in objects
    assert "ConfigMap/kube-system/hkgen-gitops-bootstrap" not in objects  # the lock is released
    # Secrets left the boot partition and are kept root-only on the root filesystem.
    assert not (cp1 / "boot" / "hkgen").exists()
    kept = cp1 / "var-lib-hkgen-gitops"
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in kept.iterdir()} == {
        "age.agekey": "0o600", "deploy-key": "0o600"}
    assert AGE_KEY.strip() not in done.stdout + done.stderr and "test" not in done.stdout.split()
    # No secret value reaches a command line (the journal records the unit's argv on failure).
    assert not any(AGE_KEY.strip() in c or "OPENSSH" in c for c in world.calls())


def test_power_cut_with_the_engine_running_applies_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp1")
    assert world.run("cp1").returncode == 0
    before = world.objects_now()
    world.log.write_text("")
    again = world.run("cp1")  # the next boot
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert _writes(world.calls()) == [] and not any(" curl " in c for c in world.calls())
    assert world.objects_now() == before


def test_second_control_plane_racing_the_first_applies_nothing_twice(tmp_path: Path) -> None:
    world = World(tmp_path)
    for host in ("cp1", "cp2"):
        world.node(host)
    # Both see an empty cluster and download at the same time (the slow download makes them overlap).
    procs = {host: subprocess.Popen(world.command(host), env=world.env(host, FAKE_CURL_DELAY="1"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for host in ("cp1", "cp2")}
    results = {host: (p.wait(timeout=120), *p.communicate()) for host, p in procs.items()}
    codes = sorted(rc for rc, _out, _err in results.values())
    assert codes == [0, 75], results
    engine_applies = [c for c in world.calls() if " kubectl apply " in c]
    assert len(engine_applies) == 2  # the engine and its sync objects, by one control plane only
    winner = next(h for h, (rc, _o, _e) in results.items() if rc == 0)
    assert all(c.startswith(winner + ":") for c in engine_applies)
    loser = next(h for h in results if h != winner)
    assert "installing the engine" in results[loser][1]
    world.log.write_text("")
    later = world.run(loser)  # its unit retries
    assert later.returncode == 0 and "nothing to do" in later.stdout and _writes(world.calls()) == []


def test_reflashed_cp1_joins_a_running_cluster_and_touches_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp2")
    assert world.run("cp2").returncode == 0  # the cluster as cp2 and cp3 run it
    before = world.objects_now()
    world.log.write_text("")
    not_yet = world.node("cp1", joined=False)
    early = world.run("cp1")
    assert early.returncode == 75 and "not a cluster member yet" in early.stdout
    assert (not_yet / "boot" / "hkgen" / "age.agekey").exists()  # nothing read before the join
    (not_yet / "joined").write_text("joined\n")
    done = world.run("cp1")
    assert done.returncode == 0 and "nothing to do" in done.stdout
    assert _writes(world.calls()) == [] and world.objects_now() == before
    assert (not_yet / "var-lib-hkgen-gitops" / "age.agekey").read_text() == AGE_KEY


def test_missing_age_key_is_a_clear_error_and_nothing_is_applied(tmp_path: Path) -> None:
    world = World(tmp_path)
    cp1 = world.node("cp1", age_key=False)
    done = world.run("cp1")
    assert done.returncode == 75
    assert "error: no age key" in done.stderr and "hkgen boot-media" in done.stderr
    assert "Nothing was applied; will retry" in done.stderr
    assert world.objects_now() == world.fresh and _writes(world.calls()) == []
    assert not any(" curl " in c for c in world.calls())  # not even downloaded
    # The unit retries; once the key is on the boot partition the install completes.
    (cp1 / "boot" / "hkgen").mkdir(exist_ok=True)  # the admin writes the boot media again
    (cp1 / "boot" / "hkgen" / "age.agekey").write_text(AGE_KEY)
    assert world.run("cp1").returncode == 0
    assert "Secret/flux-system/sops-age" in world.objects_now()


def test_a_deleted_secret_alone_is_recreated_from_the_root_only_copy(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp1")
    assert world.run("cp1").returncode == 0
    objects = world.objects_now()
    del objects["Secret/flux-system/sops-age"]
    world.state.write_text(json.dumps(objects))
    world.log.write_text("")
    done = world.run("cp1")
    assert done.returncode == 0, done.stderr
    writes = _writes(world.calls())
    # The Secret only (inside the lock): the engine is not touched.
    assert [_verb(w) for w in writes] == ["create", "create", "delete"] and " create -f " in writes[1]
    assert "Secret/flux-system/sops-age" in world.objects_now()


def test_tampered_engine_download_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "gotk-tampered.yaml"
    bad.write_bytes(GOTK.read_bytes().replace(b"ghcr.io/fluxcd/source-controller", b"evil.example/source-controller"))
    world = World(tmp_path, manifest=bad)
    world.node("cp1")
    done = world.run("cp1")
    assert done.returncode == 75
    assert "is not the pinned d201047f" in done.stderr and "refusing it" in done.stderr
    assert world.objects_now() == world.fresh


def test_api_failure_half_way_is_finished_by_the_next_run(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp1")
    (tmp_path / "cluster.json.fail-apply").write_text("")
    done = world.run("cp1")
    assert done.returncode == 75 and "could not apply the flux engine" in done.stderr
    assert "ConfigMap/kube-system/hkgen-gitops-bootstrap" not in world.objects_now()  # lock released
    (tmp_path / "cluster.json.fail-apply").unlink()
    world.log.write_text("")
    assert world.run("cp1").returncode == 0
    writes = _writes(world.calls())
    # Secrets made in the first run are not made again; the engine and its sync objects are applied.
    # lock, engine, sync objects, unlock
    assert [_verb(w) for w in writes] == ["create", "apply", "apply", "delete"]


def test_stale_lock_of_a_dead_holder_is_broken(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp1")
    world.state.write_text(json.dumps({
        **world.fresh,
        "ConfigMap/kube-system/hkgen-gitops-bootstrap": {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hkgen-gitops-bootstrap"},
            "data": {"holder": "cp3", "since": str(int(time.time()) - 3600)}}}))
    first = world.run("cp1")
    assert first.returncode == 75 and "removing it" in first.stdout
    assert world.run("cp1").returncode == 0


def test_api_server_down_is_retried(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.node("cp1")
    (tmp_path / "cluster.json.down").write_text("")
    done = world.run("cp1")
    assert done.returncode == 75 and "does not answer yet" in done.stdout


@pytest.mark.parametrize("engine", ["flux", "argocd"])
def test_control_planes_carry_the_bootstrapper_and_workers_do_not(engine: str) -> None:
    import dataclasses

    cluster = _reference()
    if engine == "argocd":
        cluster = dataclasses.replace(cluster, engine="argocd")
    for node in cluster.nodes:
        paths = {f["path"] for f in bootstrap.seed_files(cluster, node)}
        if node.is_control_plane:
            assert "/usr/local/sbin/hkgen-gitops-bootstrap" in paths
            assert ("/etc/hkgen/gitops/argocd-values.yaml" in paths) == (engine == "argocd")
        else:
            assert paths == set()
    conf = bootstrap.bootstrap_config(cluster)
    assert conf["namespace"] == ("argocd" if engine == "argocd" else "flux-system")


# --- what the bootstrapper applies, against the engines' own CRD schemas ----------------------------

def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the Flux v2.7.5 CRDs."""
    out = {}
    for doc in yaml.safe_load_all(GOTK.read_text()):
        if doc and doc["kind"] == "CustomResourceDefinition":
            for v in doc["spec"]["versions"]:
                api = f"{doc['spec']['group']}/{v['name']}"
                out[(api, doc["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def _check(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def _no_unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD schema does not declare (a structural schema prunes them silently)."""
    errors = []
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key not in schema["properties"]:
                if path not in ("", ".metadata") and not schema.get("x-kubernetes-preserve-unknown-fields"):
                    errors.append(f"{path}.{key}")
                continue
            errors += _no_unknown_fields(sub, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            errors += _no_unknown_fields(item, schema["items"], path + "[]")
    return errors


@pytest.mark.parametrize("https", [False, True])
def test_flux_objects_validate_against_the_flux_crds(https: bool) -> None:
    import dataclasses

    cluster = _reference()
    if https:
        cluster = dataclasses.replace(cluster, repo_url="https://github.com/example/home-ops.git")
    schemas = _crd_schemas()
    docs = bootstrap.flux_sync_objects(cluster) + bootstrap.flux_engine_objects(cluster)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("GitRepository", "flux-system"), ("Kustomization", "flux-system"),
        ("OCIRepository", "flux-engine"), ("Kustomization", "flux-engine")]
    for doc in docs:
        schema = schemas[(doc["apiVersion"], doc["kind"])]
        assert _check(doc, schema) == [] and _no_unknown_fields(doc, schema) == [], doc
    assert ("secretRef" in docs[0]["spec"]) is (not https)  # a public HTTPS repository needs no key
    assert docs[2]["spec"]["ref"] == {"tag": "v2.7.5"} and docs[3]["spec"]["prune"] is False


def test_argocd_objects_validate_against_the_argo_cd_crds() -> None:
    import dataclasses

    cluster = dataclasses.replace(_reference(), engine="argocd")
    folder = SHARED / "schemas" / "crds" / "argoproj.io"
    docs = bootstrap.argocd_seed_objects(cluster)
    assert [d["kind"] for d in docs] == ["ConfigMap", "AppProject", "Application"]
    plugin = yaml.safe_load(docs[0]["data"]["plugin.yaml"])
    assert plugin["kind"] == "ConfigManagementPlugin" and plugin["metadata"]["name"] == "hkgen-sops"
    for doc in docs[1:]:
        schema = json.loads((folder / f"{doc['kind'].lower()}_v1alpha1.json").read_text())
        assert _check(doc, schema) == [], doc


def test_reference_flux_system_folder_builds_with_kustomize(tmp_path: Path) -> None:
    folder = REPO / "clusters" / "home" / "flux" / "flux-system"
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == [
        ("GitRepository", "flux-system"), ("Kustomization", "flux-engine"), ("Kustomization", "flux-system"),
        ("OCIRepository", "flux-engine")]
    # The seed applies exactly the objects Git then keeps.
    seed = yaml.safe_load((REPO / "clusters" / "home" / "nodes" / "cp2" / "user-data").read_text())
    content = next(f["content"] for f in seed["write_files"] if f["path"] == "/etc/hkgen/gitops/engine-objects.yaml")
    # Every file the seed parts declare reaches user-data as an entry of its own (a template without a
    # final newline would swallow the next entry into its content).
    written = {f["path"] for f in seed["write_files"]}
    cp2 = _reference().node("cp2")
    from hkgen.areas import rejoin, seeds

    launch = seeds.base_launch_config(_reference(), cp2)
    parts = bootstrap.seed_files(_reference(), cp2) + rejoin.seed_files(_reference(), cp2, launch)
    assert {f["path"] for f in parts} <= written
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, (d for d in yaml.safe_load_all(content) if d))) == sorted(map(key, built))


@pytest.mark.parametrize("engine", ["flux", "argocd"])
def test_starters_carry_the_engine_objects_and_the_bootstrapper(tmp_path: Path, engine: str) -> None:
    from hkgen.ops.scaffold import Answers, init_repository
    from hkgen.pipeline import render_cluster

    created = init_repository(tmp_path / "r", Answers(nodes=3, engine=engine), tmp_path / "k.agekey")
    tree = render_cluster(created.cluster_dir, verify=True).tree
    paths = {p.as_posix() for p in tree}
    if engine == "flux":
        assert {"flux/flux-system/gotk-sync.yaml", "flux/flux-system/flux-engine.yaml"} <= paths
    else:
        assert "argocd/apps/argocd.yaml" in paths  # Argo CD's Application for itself
    seeds = [p for p in paths if p.startswith("nodes/") and p.endswith("/user-data")]
    assert seeds and all(b"/usr/local/sbin/hkgen-gitops-bootstrap" in tree[next(t for t in tree if t.as_posix() == s)]
                         for s in seeds)  # three control planes
