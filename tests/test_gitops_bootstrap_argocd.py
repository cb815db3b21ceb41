"""hkgen-gitops-bootstrap on an Argo CD cluster: the argo-cd chart is installed only when its
publisher's signature verifies, the way `helm verify` does.

argo-helm signs every chart it publishes: its release argo-cd-<v> carries argo-cd-<v>.tgz and the
Helm provenance file argo-cd-<v>.tgz.prov (a PGP clear-signed Chart.yaml, a line `...` and
`files:` naming the archive's sha256), signed by the key the chart's Chart.yaml names. Here the
chart archive is ../shared/charts/argo-cd-10.1.1 packaged by Helm's own code (helm-python-sdk),
its provenance is written by Helm's own signer (`helm_python.sign`) or, in Helm's format, by
`gpg --clearsign`, with throwaway keys made by the real gpg in a temporary GNUPGHOME (their secret
halves live only in the test's tmp folders, never in the repository). The bootstrapper runs with
the real gpg, gpgv and sha256sum; Helm's own `verify` is asked the same question and must agree.

What cannot run here is faked as in test_gitops_bootstrap.py: `microk8s kubectl` (no cluster) and
`curl` (no network: it serves local files by the URL's file name). `microk8s helm template`
renders the downloaded archive with Helm's own template engine (helm-python-sdk) and the values
the seed writes, so what is applied is what the chart really renders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import need_module, tools
from hkgen.areas import bootstrap
from hkgen.areas.gitops import argocd_values
from test_gitops_bootstrap import SHARED, World, _writes

try:
    import helm_python
except ImportError:  # without the charts extra: skipped, or failed under HKGEN_REQUIRE_TOOLS=1
    helm_python = None

pytestmark = [pytest.mark.charts,
              tools("gpg", "gpgv", "sha256sum", reason="the bootstrapper checks the signed provenance with them")]


@pytest.fixture(autouse=True)
def _helm_python() -> None:
    if helm_python is None:
        need_module("helm_python")

CHART = SHARED / "charts" / "argo-cd-10.1.1"
VERSION = "10.1.1"
ARCHIVE = f"argo-cd-{VERSION}.tgz"
KEY_FILE = "pgp_keys.asc"  # the file name of the pinned key URL, which the fake curl serves

FAKE_MICROK8S_HELM = r'''#!@PYTHON@
"""Fake `microk8s`: `helm template RELEASE CHART --namespace NS [--include-crds] -f VALUES` renders
the archive with Helm's own engine (helm-python-sdk); any other command goes to the fake kubectl."""
import os, sys

args = sys.argv[1:]
if args[:2] != ["helm", "template"]:
    os.execv(os.path.join(os.path.dirname(os.path.abspath(__file__)), "microk8s-kubectl"), [sys.argv[0], *args])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(os.environ.get("FAKE_HOST", "node") + ": microk8s " + " ".join(args) + "\n")
import helm_python
import yaml

words, values, namespace, i = [], {}, "default", 2
while i < len(args):
    if args[i] in ("--namespace", "-n"):
        namespace, i = args[i + 1], i + 2
    elif args[i] in ("-f", "--values"):
        values.update(yaml.safe_load(open(args[i + 1])) or {})
        i += 2
    elif args[i] == "--include-crds":  # argo-cd ships its CRDs as templates: rendered below anyway
        i += 1
    else:
        words.append(args[i])
        i += 1
release, chart_path = words
try:
    chart = helm_python.Chart.load_archive(open(chart_path, "rb").read())
    rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
except helm_python.HelmError as err:
    print(f"Error: {err}", file=sys.stderr)
    sys.exit(1)
for path in sorted(rendered):
    if path.endswith((".yaml", ".yml")) and rendered[path].strip():
        print(f"---\n# Source: {path}\n{rendered[path].strip()}")
'''


@dataclasses.dataclass(frozen=True)
class Signer:
    """A throwaway PGP key: its fingerprint, armored public key and secret keyring file."""

    fingerprint: str
    public: bytes
    secret_ring: Path
    public_ring: Path
    home: Path


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args], input=data,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Signer]]:
    """Two signing keys made by the real gpg: `publisher` (pinned in the tests) and `other`."""
    out = tmp_path_factory.mktemp("keys")
    # A short home: gpg-agent's socket path must fit a Unix socket name.
    homes = []
    signers = {}
    try:
        for name in ("publisher", "other"):
            home = Path(tempfile.mkdtemp(prefix="hkgpg", dir="/tmp"))
            homes.append(home)
            _gpg(home, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                 f"hkgen test {name} <{name}@example.invalid>", "ed25519", "sign", "never")
            colons = _gpg(home, "--with-colons", "--list-keys").decode().splitlines()
            fingerprint = next(line.split(":")[9] for line in colons if line.startswith("fpr:"))
            secret_ring = out / f"{name}.secring"
            secret_ring.write_bytes(_gpg(home, "--export-secret-keys"))
            public_ring = out / f"{name}.pubring"
            public_ring.write_bytes(_gpg(home, "--export"))
            signers[name] = Signer(fingerprint, _gpg(home, "--armor", "--export"), secret_ring, public_ring, home)
        yield signers
    finally:
        for home in homes:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30)
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The argo-cd chart packaged by Helm (the stand-in for argo-helm's release asset)."""
    return Path(helm_python.package(CHART, destination=tmp_path_factory.mktemp("chart")))


def _helm_signed(archive: Path, signer: Signer) -> bytes:
    """The provenance file Helm's own signer writes for `archive` (what argo-helm's release has)."""
    prov = Path(helm_python.sign(archive, key="hkgen test", keyring=signer.secret_ring))
    text = prov.read_bytes()
    prov.unlink()
    return text


def _gpg_signed(archive: Path, signer: Signer, version: str = VERSION) -> bytes:
    """A provenance file in Helm's format (pkg/provenance messageBlock: the chart's Chart.yaml, a
    line `...`, then `files:` with the archive's sha256), clear-signed by gpg with SHA512 as Helm does."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text()) | {"version": version}
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    body = (yaml.safe_dump(meta, sort_keys=True) + "\n...\n"
            + yaml.safe_dump({"files": {ARCHIVE: f"sha256:{digest}"}}))
    return _gpg(signer.home, "--digest-algo", "SHA512", "--clearsign", data=body.encode())


def _helm_verifies(tmp: Path, archive: bytes, prov: bytes, signer: Signer) -> bool:
    """What `helm verify` (Helm's own pkg/provenance, via helm-python-sdk) says of the same files."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    (folder / ARCHIVE).write_bytes(archive)
    (folder / f"{ARCHIVE}.prov").write_bytes(prov)
    try:
        helm_python.verify(folder / ARCHIVE, signer.public_ring)
    except helm_python.HelmError:
        return False
    return True


class ArgoWorld(World):
    """The World of test_gitops_bootstrap.py with an Argo CD cluster and argo-helm's release assets."""

    def __init__(self, tmp_path: Path, pinned: Signer) -> None:
        super().__init__(tmp_path)
        self.cluster = dataclasses.replace(self.cluster, engine="argocd")
        self.conf = bootstrap.bootstrap_config(self.cluster)
        # The test key stands in for argo-helm's (the real pin is checked in its own test below).
        self.conf["chart_key_fingerprint"] = pinned.fingerprint
        values = tmp_path / "argocd-values.yaml"
        values.write_text(yaml.safe_dump(argocd_values(self.cluster)))
        self.conf["chart_values"] = str(values)
        self.objects.write_text(yaml.safe_dump_all(bootstrap.argocd_seed_objects(self.cluster)))
        (self.bin / "microk8s").rename(self.bin / "microk8s-kubectl")
        (self.bin / "microk8s").write_text(FAKE_MICROK8S_HELM.replace("@PYTHON@", sys.executable))
        (self.bin / "microk8s").chmod(0o755)

    def serve(self, archive: bytes, prov: bytes, key: bytes) -> None:
        for name, data in ((ARCHIVE, archive), (f"{ARCHIVE}.prov", prov), (KEY_FILE, key)):
            (self.urls / name).write_bytes(data)


def _installed(objects: dict[str, Any]) -> bool:
    return {"Deployment/argocd/argocd-repo-server", "CustomResourceDefinition//applications.argoproj.io",
            "Application/argocd/root", "AppProject/argocd/home", "Secret/argocd/sops-age"} <= set(objects)


def test_pinned_signing_key_is_the_one_the_chart_names() -> None:
    """versions.yaml pins the key argo-helm's chart itself names (Chart.yaml artifacthub.io/signKey)."""
    from test_gitops_bootstrap import _reference

    cluster = dataclasses.replace(_reference(), engine="argocd")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == cluster.version("charts", "argo-cd") == VERSION
    sign_key = yaml.safe_load(chart["annotations"]["artifacthub.io/signKey"])
    conf = bootstrap.bootstrap_config(cluster)
    assert conf["chart_key_fingerprint"] == sign_key["fingerprint"] == "2B8F22F57260EFA67BE1C5824B11F800CD9D2252"
    assert conf["chart_key_url"] == sign_key["url"]
    base = f"https://github.com/argoproj/argo-helm/releases/download/argo-cd-{VERSION}/{ARCHIVE}"
    assert (conf["chart_url"], conf["chart_prov_url"]) == (base, base + ".prov")
    assert (conf["chart_name"], conf["chart_version"]) == ("argo-cd", VERSION)
    assert "chart_sha256" not in conf  # no pin that could only ever be empty


@pytest.mark.parametrize("writer", ["helm", "gpg"])
def test_a_chart_signed_by_the_pinned_key_is_installed(tmp_path: Path, keys: dict[str, Signer], archive: Path,
                                                       writer: str) -> None:
    signer = keys["publisher"]
    prov = _helm_signed(archive, signer) if writer == "helm" else _gpg_signed(archive, signer)
    assert _helm_verifies(tmp_path, archive.read_bytes(), prov, signer)  # Helm agrees it is good
    world = ArgoWorld(tmp_path, signer)
    world.serve(archive.read_bytes(), prov, signer.public)
    world.node("cp1")
    done = world.run("cp1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"signed by {signer.fingerprint}" in done.stdout
    objects = world.objects_now()
    assert _installed(objects)
    assert objects["Secret/argocd/sops-age"]["data"]["age.agekey"]
    # The repo server runs with the hkgen-sops plugin of the values the seed wrote.
    repo_server = objects["Deployment/argocd/argocd-repo-server"]["spec"]["template"]["spec"]
    assert any(c["name"] == "hkgen-sops" for c in repo_server["containers"])
    urls = [c.split(" curl ", 1)[1] for c in world.calls() if " curl " in c]
    assert urls == [world.conf["chart_url"], world.conf["chart_prov_url"], world.conf["chart_key_url"]]


def _tampered(archive: bytes) -> bytes:
    """The same chart with one byte of its gzip stream changed (still the same size)."""
    data = bytearray(archive)
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def _refused(world: ArgoWorld, message: str) -> None:
    done = world.run("cp1")
    assert done.returncode == 75, done.stdout + done.stderr
    assert message in done.stderr and "refusing" in done.stderr, done.stderr
    assert "nothing was applied; will retry" in done.stdout
    assert world.objects_now() == world.fresh and _writes(world.calls()) == []
    assert not any(" helm template " in c for c in world.calls())  # never rendered


def test_an_altered_chart_is_refused_and_the_next_run_installs_the_real_one(
        tmp_path: Path, keys: dict[str, Signer], archive: Path) -> None:
    signer = keys["publisher"]
    prov = _helm_signed(archive, signer)
    bad = _tampered(archive.read_bytes())
    assert not _helm_verifies(tmp_path, bad, prov, signer)
    world = ArgoWorld(tmp_path, signer)
    world.serve(bad, prov, signer.public)
    world.node("cp1")
    _refused(world, f"sha256 {hashlib.sha256(bad).hexdigest()} is not the sha256:")
    # The timer's next run finds the real archive (a mirror glitch is over): installed.
    world.serve(archive.read_bytes(), prov, signer.public)
    done = world.run("cp1")
    assert done.returncode == 0, done.stderr
    assert _installed(world.objects_now())


def test_a_provenance_signed_by_another_key_is_refused(tmp_path: Path, keys: dict[str, Signer],
                                                         archive: Path) -> None:
    prov = _helm_signed(archive, keys["other"])
    assert not _helm_verifies(tmp_path, archive.read_bytes(), prov, keys["publisher"])
    world = ArgoWorld(tmp_path, keys["publisher"])
    world.serve(archive.read_bytes(), prov, keys["publisher"].public)
    world.node("cp1")
    _refused(world, f"is not signed by the pinned key {keys['publisher'].fingerprint}")


def test_another_key_in_the_key_file_is_not_trusted(tmp_path: Path, keys: dict[str, Signer], archive: Path) -> None:
    """The key file holds the pinned key and another one, which signed the provenance: gpgv trusts
    a keyring of the pinned key alone, so the other signature does not count."""
    prov = _helm_signed(archive, keys["other"])
    assert _helm_verifies(tmp_path, archive.read_bytes(), prov, keys["other"])  # a good signature, by another key
    world = ArgoWorld(tmp_path, keys["publisher"])
    world.serve(archive.read_bytes(), prov, keys["other"].public + keys["publisher"].public)
    world.node("cp1")
    _refused(world, f"is not signed by the pinned key {keys['publisher'].fingerprint}")


def test_a_key_file_without_the_pinned_key_is_refused(tmp_path: Path, keys: dict[str, Signer],
                                                      archive: Path) -> None:
    """The download serves another key, and a provenance that key signed: the pin decides."""
    other = keys["other"]
    prov = _helm_signed(archive, other)
    world = ArgoWorld(tmp_path, keys["publisher"])
    world.serve(archive.read_bytes(), prov, other.public)
    world.node("cp1")
    _refused(world, f"holds no key with the pinned fingerprint {keys['publisher'].fingerprint} "
                    f"(it has: {other.fingerprint})")


@pytest.mark.parametrize("where", ["after", "before"])
def test_text_outside_the_signature_does_not_count(tmp_path: Path, keys: dict[str, Signer], archive: Path,
                                                   where: str) -> None:
    signer = keys["publisher"]
    prov = _helm_signed(archive, signer)
    bad = _tampered(archive.read_bytes())
    claim = f"files:\n  {ARCHIVE}: sha256:{hashlib.sha256(bad).hexdigest()}\n".encode()
    # After the signature: a second `files:` a reader of the raw file would also see; before it: a
    # whole message block that such a reader would see first.
    block = b"name: argo-cd\nversion: 10.1.1\n...\n" + claim
    forged = prov + b"\n" + claim if where == "after" else block + b"\n" + prov
    assert not _helm_verifies(tmp_path, bad, forged, signer)
    world = ArgoWorld(tmp_path, signer)
    world.serve(bad, forged, signer.public)
    world.node("cp1")
    # gpgv accepts the signed block (the text around it is no part of it); the hash it signs wins.
    _refused(world, f"sha256 {hashlib.sha256(bad).hexdigest()} is not the "
                    f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()} its signed provenance names")


def test_a_provenance_of_another_version_is_refused(tmp_path: Path, keys: dict[str, Signer], archive: Path) -> None:
    """A genuinely signed provenance whose Chart.yaml names another release (a replayed chart)."""
    signer = keys["publisher"]
    prov = _gpg_signed(archive, signer, version="10.0.0")
    world = ArgoWorld(tmp_path, signer)
    world.serve(archive.read_bytes(), prov, signer.public)
    world.node("cp1")
    _refused(world, "is signed for chart 'argo-cd' version '10.0.0', not the pinned argo-cd 10.1.1")


def test_a_missing_provenance_is_refused(tmp_path: Path, keys: dict[str, Signer], archive: Path) -> None:
    signer = keys["publisher"]
    world = ArgoWorld(tmp_path, signer)
    world.serve(archive.read_bytes(), b"", signer.public)
    (world.urls / f"{ARCHIVE}.prov").unlink()
    world.node("cp1")
    done = world.run("cp1")
    assert done.returncode == 75 and f"could not download {world.conf['chart_prov_url']}" in done.stderr
    assert world.objects_now() == world.fresh and _writes(world.calls()) == []


def _seed_conf(seed: Path) -> tuple[dict[str, str], list[str]]:
    """bootstrap.conf (parsed the way bash reads it) and the packages of a rendered seed."""
    import shlex

    data = yaml.safe_load(seed.read_text())
    content = next(f["content"] for f in data["write_files"] if f["path"] == "/etc/hkgen/gitops/bootstrap.conf")
    conf = {}
    for line in content.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            (conf[key],) = shlex.split(value)
    return conf, data.get("packages", [])


def test_the_seeds_carry_the_pins_and_the_flux_path_is_unchanged() -> None:
    """The committed Argo CD golden seed carries the signing-key pins; the Flux reference seed none."""
    from test_gitops_bootstrap import REPO, _reference

    conf, packages = _seed_conf(REPO / "tests" / "golden" / "home-argocd" / "nodes" / "cp1" / "user-data")
    assert conf == bootstrap.bootstrap_config(dataclasses.replace(_reference(), engine="argocd"))
    assert conf["chart_key_fingerprint"] == "2B8F22F57260EFA67BE1C5824B11F800CD9D2252"
    assert conf["chart_key_url"] == "https://argoproj.github.io/argo-helm/pgp_keys.asc"
    assert conf["chart_prov_url"] == conf["chart_url"] + ".prov" and conf["gpgv"] == "/usr/bin/gpgv"
    assert "gnupg" in packages
    flux, flux_packages = _seed_conf(REPO / "clusters" / "home" / "nodes" / "cp1" / "user-data")
    assert flux["engine"] == "flux" and flux["manifest_sha256"]
    assert not [k for k in flux if k.startswith("chart_") or k in ("gpg", "gpgv")] and "gnupg" not in flux_packages
