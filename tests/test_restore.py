"""Backups and restore on rebuild (issue 7 item 4): the dqlite datastore uploader and timers, the
restore gate Jobs in the configs layer (derived names checked against the rendered StatefulSets
and CloudNativePG Clusters), and the gate script run with real `sh` against stand-in `kubectl` and
`aws` commands for every branch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import tools
from hkgen.areas import restore
from hkgen.pipeline import Rendering, render_cluster

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / "templates" / "platform" / "restore" / "restore-gate.sh"
UPLOAD = REPO / "templates" / "platform" / "dqlite-backup" / "upload.sh"
NODE_BACKUP = REPO / "templates" / "cloud-init" / "files" / "hkgen-dqlite-backup.sh"


def _render(tmp: Path, edits: dict[str, str] | None = None) -> Rendering:
    dest = tmp / "clusters" / "home"
    dest.mkdir(parents=True)
    for name in ("cluster.yaml", "secrets.sops.yaml"):
        shutil.copy2(REPO / "clusters" / "home" / name, dest / name)
    text = (dest / "cluster.yaml").read_text()
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (dest / "cluster.yaml").write_text(text)
    return render_cluster(dest)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    """The reference cluster rendered and verified (kustomize builds, k8s and CRD schema checks)."""
    return _render(tmp_path_factory.mktemp("home"))


def _docs(rendering: Rendering, path: str) -> list[dict[str, Any]]:
    text = rendering.tree[PurePosixPath(path)].decode()
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _all_docs(rendering: Rendering, folder: str) -> Iterator[tuple[PurePosixPath, dict[str, Any]]]:
    for path in sorted(rendering.tree):
        if str(path).startswith(folder) and path.suffix == ".yaml":
            for doc in _docs(rendering, str(path)):
                yield path, doc


# --- render checks -----------------------------------------------------------------------------------

def test_gate_jobs_exactly_for_the_critical_volumes_of_the_rendered_statefulsets(home: Rendering) -> None:
    expected = set()
    for _path, doc in _all_docs(home, "apps/"):
        if doc.get("kind") != "StatefulSet":
            continue
        for claim in doc["spec"].get("volumeClaimTemplates", ()):
            if claim["spec"]["storageClassName"] == "longhorn-critical":
                for i in range(doc["spec"]["replicas"]):
                    pvc = f"{claim['metadata']['name']}-{doc['metadata']['name']}-{i}"
                    expected.add((doc["metadata"]["namespace"], pvc))
    assert expected == {("home-automation", pvc) for pvc in (
        "config-home-assistant-0", "data-zigbee2mqtt-house-0", "data-zigbee2mqtt-garden-0", "data-zigbee2mqtt-attic-0")}
    jobs = [d for d in _docs(home, "platform/configs/restore-gate/jobs.yaml") if d["kind"] == "Job"]
    gated = {(j["metadata"]["namespace"], _env(j["spec"]["template"]["spec"]["containers"][0]).get("PVC"))
             for j in jobs if _env(j["spec"]["template"]["spec"]["containers"][0])["GATE_KIND"] == "volume"}
    assert gated == expected
    assert {(v.namespace, v.pvc) for v in restore.gated_volumes(home.blueprint.cluster)} == expected
    for job in jobs:
        env = _env(job["spec"]["template"]["spec"]["containers"][0])
        if env["GATE_KIND"] == "volume":
            assert env["MARKER"] == f"home/hkgen/volumes/{job['metadata']['namespace']}/{env['PVC']}"
            assert env["STORAGE_CLASS"] == "longhorn-critical" and env["RECURRING_GROUP"] == "critical"
        assert job["spec"]["backoffLimit"] >= 1000  # keeps retrying instead of giving up
        assert job["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/force"] == "enabled"


def test_database_gate_matches_the_rendered_cloudnative_pg_cluster(home: Rendering) -> None:
    """Issue 19: the Cluster in the apps layer has no `bootstrap` (the gate picks it); the gate's two
    variants are that Cluster plus the start, and archive where the ObjectStore and the gate look."""
    cluster = next(d for d in _docs(home, "apps/grafana/database.yaml") if d["kind"] == "Cluster")
    assert "bootstrap" not in cluster["spec"] and "externalClusters" not in cluster["spec"]
    assert "annotations" not in cluster["metadata"]
    plugin = cluster["spec"]["plugins"][0]["parameters"]
    store = next(d for d in _docs(home, "apps/grafana/database-backup.yaml") if d["kind"] == "ObjectStore")
    destination = store["spec"]["configuration"]["destinationPath"].removeprefix("s3://home-cluster-backups/")
    job = next(d for d in _docs(home, "platform/configs/restore-gate/jobs.yaml")
               if d["metadata"]["name"] == "restore-db-grafana-db")
    pod = job["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert "serverName" not in plugin  # barman's default: the Cluster's name, the same folder for every incarnation
    assert env["ARCHIVE"] == f"{destination}/{cluster['metadata']['name']}/" == "home/postgres/grafana-db/"
    assert (env["DB_NAME"], env["FIELD_MANAGER"], env["MANIFESTS"]) == ("grafana", "hkgen-restore-gate", "/manifests")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "manifests")
    source = next(v for v in pod["volumes"] if v["name"] == "manifests")["configMap"]["name"]
    assert mount["mountPath"] == "/manifests" and source == "hkgen-restore-db-grafana-db"
    maps = {d["metadata"]["name"]: d for d in _docs(home, "platform/configs/restore-gate/databases.yaml")}
    variants = {k: YAML(typ="safe", pure=True).load(v) for k, v in maps[source]["data"].items()}
    assert sorted(variants) == ["initdb.yaml", "recovery.yaml"]
    applied = {**cluster, "metadata": {**cluster["metadata"], "labels": {
        **cluster["metadata"]["labels"], "app.kubernetes.io/managed-by": "hkgen"}}}  # as kustomize applies it
    for name, variant in variants.items():
        spec = {k: v for k, v in variant["spec"].items() if k not in ("bootstrap", "externalClusters")}
        assert spec == applied["spec"], name  # the engine's apply changes nothing the gate created
        assert variant["metadata"]["labels"] == applied["metadata"]["labels"]
    initdb, recovery = variants["initdb.yaml"], variants["recovery.yaml"]
    assert initdb["spec"]["bootstrap"] == {"initdb": {"database": "grafana", "owner": "grafana"}}
    assert initdb["metadata"]["annotations"] == {"hkgen.io/bootstrap": "initdb"}  # keeps the empty-archive check
    assert recovery["spec"]["bootstrap"] == {"recovery": {"source": "backups", "database": "grafana",
                                                          "owner": "grafana"}}
    assert recovery["metadata"]["annotations"] == {"hkgen.io/bootstrap": "recovery",
                                                   "cnpg.io/skipEmptyWalArchiveCheck": "enabled"}
    assert recovery["spec"]["externalClusters"] == [{"name": "backups", "plugin": {
        "name": "barman-cloud.cloudnative-pg.io",
        "parameters": {"barmanObjectName": store["metadata"]["name"], "serverName": "grafana-db"}}}]
    import upstream
    from hkgen.verify.k8s import validate_object

    crd = upstream.crd_validator("postgresql.cnpg.io/v1", "Cluster")  # the pinned CloudNativePG chart's CRD
    for variant in variants.values():  # the render checks the ConfigMap, these are its data
        assert validate_object(variant, "1.34") == (True, [])  # hkgen's own Cluster schema
        assert list(crd.errors(variant)) == []


def test_postgres_generation_is_ignored_with_a_located_warning(tmp_path: Path) -> None:
    """Issue 19: the key still validates (older files), is ignored, and says so where it is written."""
    from hkgen.config.load import load_file
    from hkgen.validation.validate import validate_document

    edit = {"    postgresInstances: 3\n": "    postgresInstances: 3\n    postgresGeneration: 3\n"}
    rendering = _render(tmp_path, edit)
    cluster = next(d for d in _docs(rendering, "apps/grafana/database.yaml") if d["kind"] == "Cluster")
    assert "bootstrap" not in cluster["spec"] and "serverName" not in cluster["spec"]["plugins"][0]["parameters"]
    job = next(d for d in _docs(rendering, "platform/configs/restore-gate/jobs.yaml")
               if d["metadata"]["name"] == "restore-db-grafana-db")
    assert _env(job["spec"]["template"]["spec"]["containers"][0])["ARCHIVE"] == "home/postgres/grafana-db/"
    path = tmp_path / "clusters" / "home" / "cluster.yaml"
    line = path.read_text().splitlines().index("    postgresGeneration: 3") + 1
    validation = validate_document(load_file(path))
    assert validation.cluster is not None  # still valid
    warned = [w for w in validation.warnings if w.path == "$.apps.grafana.postgresGeneration"]
    assert len(warned) == 1 and warned[0].line == line and "deprecated and ignored" in warned[0].message


def test_gate_is_in_the_configs_layer_before_the_apps(home: Rendering) -> None:
    layer = _docs(home, "platform/configs/kustomization.yaml")[0]
    assert "restore-gate" in layer["resources"]
    flux = {d["metadata"]["name"]: d["spec"] for d in _docs(home, "flux/layers.yaml")}
    assert flux["configs"]["wait"] is True and flux["apps"]["dependsOn"] == [{"name": "configs"}]
    component = next(c for c in home.blueprint.components if c.name == "restore-gate")
    assert component.layer == "configs" and "longhorn-config" in component.depends_on


def test_no_secret_values_and_scripts_are_shipped_verbatim(home: Rendering) -> None:
    for path in ("platform/configs/restore-gate/credentials.yaml",
                 "platform/controllers/dqlite-backup/credentials.yaml"):
        for secret in _docs(home, path):
            assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "${S3_ACCESS_KEY_ID}",
                                            "AWS_SECRET_ACCESS_KEY": "${S3_SECRET_ACCESS_KEY}"}
    for path, key, script in (("platform/configs/restore-gate/script.yaml", "restore-gate.sh", GATE),
                              ("platform/controllers/dqlite-backup/script.yaml", "upload.sh", UPLOAD)):
        for cm in _docs(home, path):
            assert cm["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/substitute"] == "disabled"
            assert cm["data"][key] == script.read_text()


def test_gate_rbac_is_limited(home: Rendering) -> None:
    rules = {(d["kind"], d["metadata"].get("namespace")): d.get("rules") for d in
             _docs(home, "platform/configs/restore-gate/rbac.yaml") if d["kind"] in ("Role", "ClusterRole")}
    verbs = {verb for rs in rules.values() for r in rs for verb in r["verbs"]}
    assert verbs <= {"get", "list", "create", "patch", "delete"}
    # delete: only a held claim and the pod waiting on it (its marker was deleted on purpose)
    assert {res for rs in rules.values() for r in rs if "delete" in r["verbs"] for res in r["resources"]} == {
        "persistentvolumeclaims", "pods"}
    assert rules[("ClusterRole", None)] == [{"apiGroups": [""], "resources": ["persistentvolumes"],
                                             "verbs": ["get", "create", "patch"]}]
    assert all("secrets" not in r["resources"] for rs in rules.values() for r in rs)
    # CloudNativePG Clusters: read and create where a gated database is; patch (the server-side apply
    # that co-owns an older Cluster's unchanged bootstrap) only the gated Clusters by name; no update, no delete
    clusters = [(ns, r) for (_kind, ns), rs in rules.items() for r in rs if r["resources"] == ["clusters"]]
    assert clusters == [("monitoring", {"apiGroups": ["postgresql.cnpg.io"], "resources": ["clusters"],
                                        "verbs": ["get", "create"]}),
                        ("monitoring", {"apiGroups": ["postgresql.cnpg.io"], "resources": ["clusters"],
                                        "resourceNames": ["grafana-db"], "verbs": ["patch"]})]


def test_dqlite_uploader_per_control_plane_and_timers_in_their_seeds(home: Rendering) -> None:
    cronjobs = _docs(home, "platform/controllers/dqlite-backup/cronjobs.yaml")
    by_node = {c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]: c
               for c in cronjobs}
    assert sorted(by_node) == ["cp1", "cp2", "cp3"]
    for node, cron in by_node.items():
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        env = _env(pod["containers"][0])
        assert env["DEST"] == f"home/dqlite/{node}/" and env["KEEP"] == str(14 * 24 // restore.DQLITE_EVERY_HOURS)
        assert pod["volumes"][0]["hostPath"]["path"] == restore.DQLITE_DIR
        assert pod["containers"][0]["volumeMounts"][0]["readOnly"] is True
        toleration = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
        assert toleration in pod["tolerations"]
        assert pod["containers"][0]["image"].startswith("docker.io/amazon/aws-cli:")
    calendars = set()
    for node in ("cp1", "cp2", "cp3", "w1"):
        seed = YAML(typ="safe", pure=True).load(home.tree[PurePosixPath(f"nodes/{node}/user-data")].decode())
        files = {f["path"]: f["content"] for f in seed["write_files"]}
        timer = files.get("/etc/systemd/system/hkgen-dqlite-backup.timer")
        if node == "w1":
            assert timer is None and "age" not in seed["packages"]
            continue
        assert timer is not None
        calendars.add(next(line for line in timer.splitlines() if line.startswith("OnCalendar=")))
        service = files["/etc/systemd/system/hkgen-dqlite-backup.service"]
        command = (f"/usr/local/sbin/hkgen-dqlite-backup {restore.DQLITE_DIR} {restore.DQLITE_KEEP_LOCAL} "
                   "/etc/hkgen/dqlite-backup.recipients")
        assert f"ExecStart={command}" in service
        assert files["/usr/local/sbin/hkgen-dqlite-backup"] == NODE_BACKUP.read_text()
        # The archives are encrypted to the cluster's age recipients (public keys) on the node.
        listed = [line for line in files["/etc/hkgen/dqlite-backup.recipients"].splitlines()
                  if line and not line.startswith("#")]
        assert listed == list(home.validation.cluster.age_recipients)
        assert "age" in seed["packages"]
        assert ["systemctl", "enable", "--now", "hkgen-dqlite-backup.timer"] in seed["runcmd"]
    assert len(calendars) == 3  # control planes never back up at the same time


def test_without_restore_on_rebuild_no_gate_but_backups(tmp_path: Path) -> None:
    rendering = _render(tmp_path, {"restoreOnRebuild: true": "restoreOnRebuild: false"})
    names = {c.name for c in rendering.blueprint.components}
    assert "restore-gate" not in names and "dqlite-backup" in names
    cluster = next(d for d in _docs(rendering, "apps/grafana/database.yaml") if d["kind"] == "Cluster")
    assert "initdb" in cluster["spec"]["bootstrap"]


def test_chart_made_critical_volume_is_refused(tmp_path: Path) -> None:
    from hkgen.core.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot restore volume prometheus-db"):
        _render(tmp_path, {"    backupClass: local\n    thanos: true": "    backupClass: critical\n    thanos: true"})


@tools("shellcheck")
def test_scripts_pass_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "-s", "sh", str(GATE), str(UPLOAD), str(NODE_BACKUP)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the gate script against stand-ins ---------------------------------------------------------------

# A stand-in kubectl keeping cluster state in files under $FAKE: exactly the calls the gate makes,
# answered like the real one (`--ignore-not-found -o name` prints nothing for a missing object).
FAKE_KUBECTL = textwrap.dedent('''\
    import os, sys
    from pathlib import Path
    state = Path(os.environ["FAKE"])
    args = sys.argv[1:]
    with open(state / "calls.log", "a") as log:
        log.write("kubectl " + " ".join(args) + "\\n")
    if (state / "api-down").exists():
        sys.stderr.write("The connection to the server was refused\\n"); sys.exit(1)
    ns = None
    if args[:1] == ["-n"]:
        ns, args = args[1], args[2:]
    def obj(kind, name):
        return state / "objects" / kind / (name if ns is None or kind in ("pv",) else ns + "_" + name)
    verb = args[0]
    if verb == "get":
        kind, rest = args[1], args[2:]
        if kind == "backups.longhorn.io":
            print((state / "backups.tsv").read_text() if (state / "backups.tsv").exists() else "", end=""); sys.exit(0)
        if kind == "backupvolumes.longhorn.io":
            text = (state / "backupvolumes.tsv").read_text() if (state / "backupvolumes.tsv").exists() else ""
            print(text, end=""); sys.exit(0)
        if kind == "backuptargets.longhorn.io":
            print((state / "target.tsv").read_text().rstrip("\\n"), end=""); sys.exit(0)
        short = {"persistentvolumeclaim": "pvc", "persistentvolume": "pv", "volumes.longhorn.io": "volume",
                 "clusters.postgresql.cnpg.io": "pgcluster"}[kind]
        name, path = rest[0], obj(short, rest[0])
        if "--ignore-not-found" in rest and not path.exists():
            sys.exit(0)
        if not path.exists():
            sys.stderr.write(f'Error from server (NotFound): {kind} "{name}" not found\\n'); sys.exit(1)
        if short == "volume" and "-o" in rest and rest[rest.index("-o") + 1].startswith("jsonpath"):
            print("true false detached unknown", end=""); sys.exit(0)
        if short == "pv" and "-o" in rest and rest[rest.index("-o") + 1].startswith("jsonpath"):
            print(path.read_text(), end=""); sys.exit(0)
        if short == "pgcluster" and "resourceVersion" in rest[rest.index("-o") + 1]:
            # jsonpath prints a map or list value as compact JSON, an absent one as nothing
            import json
            doc = json.loads(path.read_text())
            ext = doc["spec"].get("externalClusters")
            compact = {"separators": (",", ":")}
            print(doc["metadata"].get("resourceVersion", "1") + "\\t" + json.dumps(doc["spec"]["bootstrap"], **compact)
                  + "\\t" + (json.dumps(ext, **compact) if ext else ""), end=""); sys.exit(0)
        if short == "pgcluster" and "-o" in rest and rest[rest.index("-o") + 1].startswith("jsonpath"):
            import json
            doc = json.loads(path.read_text())
            boot = doc["spec"].get("bootstrap") or {}
            fields = [name, (doc["metadata"].get("annotations") or {}).get("hkgen.io/bootstrap", ""),
                      (boot.get("initdb") or {}).get("database", ""), (boot.get("recovery") or {}).get("database", "")]
            print("\\t".join(fields), end=""); sys.exit(0)
        if short == "pvc" and "-o" in rest and rest[rest.index("-o") + 1].startswith("jsonpath"):
            import json
            text = path.read_text()
            labels = ((json.loads(text).get("metadata") or {}).get("labels") or {}) if text.startswith("{") else {}
            print(name + "\\t" + labels.get("hkgen.io/held", ""), end=""); sys.exit(0)
        print(f"{kind}/{name}"); sys.exit(0)
    if verb == "create" and args[1] == "configmap":
        path = obj("configmap", args[2])
        if path.exists():
            sys.stderr.write("AlreadyExists\\n"); sys.exit(1)
        path.parent.mkdir(parents=True, exist_ok=True); path.write_text(""); sys.exit(0)
    if verb == "label" and args[1] == "persistentvolumeclaim":
        import json
        path = obj("pvc", args[2])
        doc = json.loads(path.read_text())
        for change in args[3:]:
            if change.endswith("-"):
                doc["metadata"]["labels"].pop(change[:-1], None)
            elif "=" in change:
                key, _, value = change.partition("=")
                doc["metadata"].setdefault("labels", {})[key] = value
        path.write_text(json.dumps(doc)); sys.exit(0)
    if verb == "delete":
        short = {"persistentvolumeclaim": "pvc", "pod": "pod"}[args[1]]
        path = obj(short, args[2])
        with open(state / "deletes.log", "a") as out:
            out.write(f"{short} {args[2]}\\n")
        if path.exists():
            path.unlink()
        sys.exit(0)
    if verb == "patch":
        with open(state / "patches.log", "a") as out:
            out.write(" ".join(args) + "\\n")
        sys.exit(0)
    if verb == "create" and args[1].startswith("--field-manager=") and args[2] == "-f" and args[3] != "-":
        # `kubectl create -f FILE`: AlreadyExists (exit 1) when the object is there, as the API
        # server answers; the file "race" makes another attempt create it first.
        import json, yaml
        doc = yaml.safe_load(Path(args[3]).read_text())
        ns = doc["metadata"]["namespace"]
        path = obj("pgcluster", doc["metadata"]["name"])
        if (state / "race").exists() and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**doc, "manager": "another attempt"}))
        if path.exists():
            sys.stderr.write(f'Error from server (AlreadyExists): error when creating "{args[3]}": '
                             f'clusters.postgresql.cnpg.io "{doc["metadata"]["name"]}" already exists\\n')
            sys.exit(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**doc, "manager": args[1].split("=", 1)[1]}))
        sys.exit(0)
    if verb == "apply" and args[1:] == ["--server-side", "--field-manager=hkgen-restore-gate", "-f", "-"]:
        # Server-side apply as the API server answers it: with metadata.resourceVersion set, a missing
        # object is an error (nothing created) and a changed one a Conflict; the applied fields get
        # the manager as a co-owner (recorded), annotations are merged.
        import json
        doc = json.loads(sys.stdin.read())
        ns = doc["metadata"]["namespace"]
        path = obj("pgcluster", doc["metadata"]["name"])
        if not path.exists():
            sys.stderr.write("Error from server (NotFound): clusters.postgresql.cnpg.io not found\\n"); sys.exit(1)
        live = json.loads(path.read_text())
        if doc["metadata"].get("resourceVersion") not in (None, live["metadata"].get("resourceVersion", "1")):
            sys.stderr.write("Error from server (Conflict): the object has been modified\\n"); sys.exit(1)
        with open(state / "applies.log", "a") as out:
            out.write(json.dumps(doc) + "\\n")
        live["metadata"].setdefault("annotations", {}).update(doc["metadata"].get("annotations") or {})
        live["spec"].update(doc["spec"])
        live.setdefault("coowners", {})[args[2].split("=", 1)[1]] = sorted(doc["spec"])
        live["metadata"]["resourceVersion"] = str(int(live["metadata"].get("resourceVersion", "1")) + 1)
        path.write_text(json.dumps(live)); sys.exit(0)
    if verb == "create" and args[1:] == ["-f", "-"]:
        import yaml
        doc = yaml.safe_load(sys.stdin.read())
        ns = doc["metadata"].get("namespace")
        short = {"PersistentVolumeClaim": "pvc", "PersistentVolume": "pv", "Volume": "volume",
                 "Event": "event"}[doc["kind"]]
        name = doc["metadata"].get("name") or "event-%d" % len(list((state / "objects").glob("*/*")))
        path = obj(short, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        import json
        path.write_text("Available" if short == "pv" else json.dumps(doc))
        if short == "pv":
            (state / "objects" / "pv.json").write_text(json.dumps(doc))
        sys.exit(0)
    sys.stderr.write("fake kubectl: unexpected call %r\\n" % (sys.argv,)); sys.exit(99)
''')

# A stand-in AWS CLI on a folder as the bucket: `list-objects-v2 ... --query Contents[].Key --output
# text` prints the keys tab-separated or `None`, like the real one; `s3 cp - URL` stores stdin.
FAKE_AWS = textwrap.dedent('''\
    import os, sys
    from pathlib import Path
    state = Path(os.environ["FAKE"])
    args = sys.argv[1:]
    with open(state / "calls.log", "a") as log:
        log.write("aws " + " ".join(args) + "\\n")
    if (state / "s3-down").exists():
        sys.stderr.write("Could not connect to the endpoint URL\\n"); sys.exit(255)
    bucket_root = state / "s3"
    if args[:2] == ["s3api", "list-objects-v2"]:
        bucket, prefix = args[args.index("--bucket") + 1], args[args.index("--prefix") + 1]
        root = bucket_root / bucket
        if not root.is_dir():
            sys.stderr.write("An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation\\n")
            sys.exit(254)
        keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        keys = [k for k in keys if k.startswith(prefix)]
        print("\\t".join(keys) if keys else "None"); sys.exit(0)
    if args[:2] == ["s3", "cp"] and args[2] == "-":
        bucket, _, key = args[3].removeprefix("s3://").partition("/")
        path = bucket_root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sys.stdin.buffer.read()); sys.exit(0)
    sys.stderr.write("fake aws: unexpected call %r\\n" % (sys.argv,)); sys.exit(99)
''')

NS, PVC = "home-automation", "config-home-assistant-0"
MARKER = f"home/hkgen/volumes/{NS}/{PVC}"


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "objects").mkdir(parents=True)
    (state / "s3" / "bucket").mkdir(parents=True)
    (state / "target.tsv").write_text("true\t2026-11-24T10:00:00Z\t\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, code in (("kubectl", FAKE_KUBECTL), ("aws", FAKE_AWS)):
        (bin_dir / f"{name}.py").write_text(code)
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{bin_dir / name}.py" "$@"\n')
        (bin_dir / name).chmod(0o755)
    return state


def _gate(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": f"{state.parent / 'bin'}:/usr/bin:/bin", "FAKE": str(state), "HOME": str(state.parent),
        "NAMESPACE": NS, "STATUS_CONFIGMAP": restore.STATUS_CONFIGMAP, "BUCKET": "bucket",
        "GATE_KIND": "volume", "PVC": PVC, "POD": "home-assistant-0", "MARKER": MARKER,
        "STORAGE_CLASS": "longhorn-critical",
        "RECURRING_GROUP": "critical", "VOLUME_PREFIX": PVC, "REPLICAS": "3", "LONGHORN_NAMESPACE": "longhorn-system",
        "BACKUP_TARGET": "default", "RESTORE_TIMEOUT": "30", "POLL_SECONDS": "1",
    }
    return subprocess.run(["sh", str(GATE)], env={**base, **env}, capture_output=True, text=True, timeout=60,
                          check=False)


def _status(state: Path) -> str:
    return (state / "patches.log").read_text() if (state / "patches.log").exists() else ""


def _held(state: Path) -> bool:
    """The app's claim exists and is held (bound to a PV name that exists only after the restore)."""
    import json

    path = state / "objects" / "pvc" / f"{NS}_{PVC}"
    if not path.exists():
        return False
    doc = json.loads(path.read_text())
    return bool(doc["metadata"]["labels"].get("hkgen.io/held") == "true" and doc["spec"]["volumeName"] == PVC)


def _objects(state: Path, kind: str) -> list[Path]:
    return sorted((state / "objects" / kind).glob("*")) if (state / "objects" / kind).is_dir() else []


def _backup_line(name: str, created: str, pvc: str, state_: str = "Completed") -> str:
    status = f'{{"pvName":"pvc-1","pvStatus":"Bound","namespace":"{NS}","pvcName":"{pvc}","lastPVCRefAt":"",' \
             '"workloadsStatus":null,"lastPodRefAt":""}'
    url = f"s3://bucket@eu-central-1/home/longhorn/?backup={name}&volume=pvc-1"
    volume = "pvc-1" if pvc == PVC else "pvc-9"
    return f"{name}\t{state_}\t{created}\t{url}\t10737418240\t{status}\t{volume}\n"


def _backup_volume(last: str, volume: str = "pvc-1") -> str:
    """A BackupVolume as `kubectl get -o jsonpath` prints it: name, spec.volumeName, status.lastBackupName."""
    return f"{volume}-0a1b2c\t{volume}\t{last}\n"


def test_gate_pvc_exists_restores_nothing_and_keeps_its_marker(fake: Path) -> None:
    (fake / "objects" / "pvc").mkdir()
    (fake / "objects" / "pvc" / f"{NS}_{PVC}").write_text("{}")
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("the first one")
    done = _gate(fake)
    assert done.returncode == 0, done.stderr
    assert "Present" in _status(fake) and "marker written" not in _status(fake)
    assert (fake / "s3" / "bucket" / MARKER).read_text() == "the first one"
    assert not _objects(fake, "volume") and not (fake / "objects" / "pv.json").exists()


def test_gate_pvc_exists_without_marker_writes_it(fake: Path) -> None:
    # A volume that became critical later (or existed before the gate) has no marker: without one a
    # rebuild would start its app empty although nightly backups of it exist.
    (fake / "objects" / "pvc").mkdir()
    (fake / "objects" / "pvc" / f"{NS}_{PVC}").write_text("{}")
    done = _gate(fake)
    assert done.returncode == 0, done.stderr
    assert (fake / "s3" / "bucket" / MARKER).is_file()
    assert "Present" in _status(fake) and "marker written, so a rebuild restores it" in _status(fake)
    # The next run after a rebuild takes it for a restore, not for a new volume.
    (fake / "objects" / "pvc" / f"{NS}_{PVC}").unlink()
    again = _gate(fake)  # no backup yet: its claim is held (the app waits), the gate does not fail
    assert again.returncode == 0 and "NoBackup" in _status(fake) and _held(fake)


def test_gate_pvc_exists_never_fails_on_s3(fake: Path) -> None:
    (fake / "objects" / "pvc").mkdir()
    (fake / "objects" / "pvc" / f"{NS}_{PVC}").write_text("{}")
    (fake / "s3-down").write_text("")
    done = _gate(fake)
    assert done.returncode == 0, done.stderr  # a running cluster's apps do not depend on S3
    assert "Present" in _status(fake) and "could not be checked" in _status(fake)
    assert "warning: cannot read s3://bucket/" in done.stdout


def test_gate_new_volume_writes_the_marker(fake: Path) -> None:
    done = _gate(fake)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (fake / "s3" / "bucket" / MARKER).is_file()
    assert "New" in _status(fake) and not _objects(fake, "pvc")
    assert "Normal" in (_objects(fake, "event")[0]).read_text()


def test_gate_rebuilt_with_backup_restores_the_newest(fake: Path) -> None:
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("x")
    (fake / "backups.tsv").write_text(
        _backup_line("backup-1111111111111111", "2026-11-20T02:30:00Z", PVC)
        + _backup_line("backup-3333333333333333", "2026-11-23T02:30:00Z", "data-mosquitto-0")
        + _backup_line("backup-4444444444444444", "2026-11-23T02:31:00Z", PVC, "InProgress")
        + _backup_line("backup-2222222222222222", "2026-11-22T02:30:00Z", PVC))
    (fake / "backupvolumes.tsv").write_text(_backup_volume("backup-3333333333333333", "pvc-9")
                                            + _backup_volume("backup-2222222222222222"))
    done = _gate(fake)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    volume = json.loads(_objects(fake, "volume")[0].read_text())
    assert volume["metadata"]["name"] == f"{PVC}-2222222222222222"
    assert volume["spec"]["fromBackup"].endswith("backup=backup-2222222222222222&volume=pvc-1")
    assert not _held(fake)  # bound and released: the app starts on its restored volume
    assert volume["metadata"]["labels"]["recurring-job-group.longhorn.io/critical"] == "enabled"
    pv = json.loads((fake / "objects" / "pv.json").read_text())
    assert pv["spec"]["csi"] == {
        "driver": "driver.longhorn.io", "fsType": "ext4", "volumeHandle": volume["metadata"]["name"],
        "volumeAttributes": {"numberOfReplicas": "3", "staleReplicaTimeout": "2880"}}
    assert pv["spec"]["claimRef"] == {"namespace": NS, "name": PVC}
    pvc = json.loads((fake / "objects" / "pvc" / f"{NS}_{PVC}").read_text())
    # The claim (made first, held) names the PV by the fixed name the restore then creates.
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] == PVC
    assert pvc["metadata"]["labels"]["hkgen.io/restored-from"] == "backup-2222222222222222"
    assert pvc["spec"]["storageClassName"] == "longhorn-critical"
    assert "Restored" in _status(fake)


def test_gate_rebuilt_without_backup_stops_with_a_clear_message(fake: Path) -> None:
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("x")
    other = _backup_line("backup-3333333333333333", "2026-11-23T02:30:00Z", "data-mosquitto-0")
    (fake / "backups.tsv").write_text(other)
    done = _gate(fake)
    # Issue 19: one app's missing backup holds that app alone. The gate succeeds (the rest of the
    # apps layer starts) and leaves the claim held, so the StatefulSet never provisions it empty.
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PVC {PVC} existed before but Longhorn finds no completed backup" in done.stdout
    assert "NoBackup" in _status(fake) and "stays held (its app waits, the other apps start)" in _status(fake)
    assert "Warning" in _objects(fake, "event")[0].read_text()
    assert _held(fake) and not _objects(fake, "volume")
    # The next run (the nightly backup has landed) restores into the held claim.
    (fake / "backups.tsv").write_text(other + _backup_line("backup-2222222222222222", "2026-11-22T02:30:00Z", PVC))
    (fake / "backupvolumes.tsv").write_text(_backup_volume("backup-2222222222222222"))
    again = _gate(fake)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Restored" in _status(fake) and not _held(fake)


def test_held_claim_is_released_when_its_marker_is_deleted_on_purpose(fake: Path) -> None:
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("x")
    assert _gate(fake).returncode == 0 and _held(fake)  # no backup: held
    (fake / "s3" / "bucket" / MARKER).unlink()  # RECOVERY.md: let the app start empty
    done = _gate(fake)
    assert done.returncode == 0 and "released" in done.stdout
    assert (fake / "deletes.log").read_text().splitlines() == [f"pvc {PVC}", "pod home-assistant-0"]


def test_gate_unreachable_target_never_reads_as_new(fake: Path) -> None:
    (fake / "s3-down").write_text("")
    done = _gate(fake)
    assert done.returncode != 0
    assert "TargetUnreachable" in _status(fake) and "cannot read s3://bucket/" in done.stdout
    assert not (fake / "s3" / "bucket" / MARKER).exists()


def test_gate_unavailable_longhorn_target_stops(fake: Path) -> None:
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("x")
    (fake / "target.tsv").write_text("false\t\tcannot reach s3 endpoint\n")
    done = _gate(fake)
    assert done.returncode == 0 and "is not available: cannot reach s3 endpoint" in done.stdout and _held(fake)


def test_uploader_copies_new_archives_and_keeps_the_newest(fake: Path, tmp_path: Path) -> None:
    source = tmp_path / "backups"
    source.mkdir()
    for day in range(1, 6):
        (source / f"dqlite-cp1-2026112{day}T000000Z.tar.gz.age").write_text(str(day))
    existing = fake / "s3" / "bucket" / "home" / "dqlite" / "cp1"
    existing.mkdir(parents=True)
    (existing / "dqlite-cp1-20261121T000000Z.tar.gz.age").write_text("1")
    # Left by an hkgen that did not encrypt yet: every Secret in clear, so it goes.
    (existing / "dqlite-cp1-20261101T000000Z.tar.gz").write_text("plain")
    # The uploader also needs `aws s3 cp FILE URL` and `aws s3 rm URL`: extend the stand-in.
    extra = textwrap.dedent('''\
        if args[:2] == ["s3", "cp"]:
            bucket, _, key = args[3].removeprefix("s3://").partition("/")
            (bucket_root / bucket / key).write_bytes(Path(args[2]).read_bytes()); sys.exit(0)
        if args[:2] == ["s3", "rm"]:
            bucket, _, key = args[2].removeprefix("s3://").partition("/")
            (bucket_root / bucket / key).unlink(); sys.exit(0)
    ''')
    aws = tmp_path / "bin" / "aws.py"
    fallback = 'sys.stderr.write("fake aws: unexpected'
    aws.write_text(aws.read_text().replace(fallback, extra + fallback))
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE": str(fake), "SOURCE": str(source), "BUCKET": "bucket",
           "DEST": "home/dqlite/cp1/", "KEEP": "3"}
    done = subprocess.run(["sh", str(UPLOAD)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in existing.iterdir()) == [
        f"dqlite-cp1-2026112{d}T000000Z.tar.gz.age" for d in (3, 4, 5)]
    calls = (fake / "calls.log").read_text()
    assert "20261121T000000Z.tar.gz.age s3://" not in calls  # already there: not uploaded again
    assert "removed unencrypted home/dqlite/cp1/dqlite-cp1-20261101T000000Z.tar.gz" in done.stdout


@tools("age", reason=".ci/run installs it")
def test_node_backup_encrypts_every_archive_to_the_admins_keys(tmp_path: Path) -> None:
    import socket

    import pyrage

    admin, other = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    recipients = tmp_path / "recipients"
    recipients.write_text(f"# the cluster's secrets.ageRecipients\n{admin.to_public()}\n{other.to_public()}\n")
    fake = tmp_path / "microk8s"  # `microk8s dbctl backup -o NAME` writes NAME.tar.gz here
    fake.write_text('#!/bin/sh\n[ "$1 $2 $3" = "dbctl backup -o" ] || exit 9\n'
                    'printf "datastore %s" "$4" > "$4.tar.gz"\n')
    fake.chmod(0o755)
    folder = tmp_path / "backups"
    folder.mkdir()
    host = socket.gethostname().split(".")[0]  # the script names archives after `hostname -s`
    (folder / f"dqlite-{host}-20261101T000000Z.tar.gz").write_text("plain, from before encryption")
    for i in range(3):
        (folder / f"dqlite-{host}-2026110{i + 2}T000000Z.tar.gz.age").write_text("older")
    env = {"PATH": "/usr/bin:/bin", "HKGEN_MICROK8S": str(fake)}
    done = subprocess.run(["sh", str(NODE_BACKUP), str(folder), "2", str(recipients)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and all(n.endswith(".tar.gz.age") for n in names)  # newest 2, nothing in clear
    newest = folder / names[-1]
    assert names[0] == f"dqlite-{host}-20261104T000000Z.tar.gz.age"
    assert b"datastore" not in newest.read_bytes()
    for identity in (admin, other):  # every listed key reads it
        assert pyrage.decrypt(newest.read_bytes(), [identity]).startswith(b"datastore .partial-dqlite-")
    assert oct(newest.stat().st_mode & 0o777) == "0o600"
    # No recipient that can read it: nothing is written, the plain archive does not stay behind.
    recipients.write_text("# nobody\n")
    failed = subprocess.run(["sh", str(NODE_BACKUP), str(folder), "2", str(recipients)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert failed.returncode != 0
    assert sorted(p.name for p in folder.iterdir()) == names


def test_gate_restores_the_backup_longhorn_names_latest(fake: Path) -> None:
    """Issue 19: the BackupVolume's status.lastBackupName decides, not the newest "Completed" of a
    listing that may be half-synced after a rebuild; while Longhorn names none, or names one not
    listed yet, the gate waits (NotSynced) and creates nothing."""
    (fake / "s3" / "bucket" / MARKER).parent.mkdir(parents=True)
    (fake / "s3" / "bucket" / MARKER).write_text("x")
    (fake / "backups.tsv").write_text(
        _backup_line("backup-1111111111111111", "2026-11-20T02:30:00Z", PVC)
        + _backup_line("backup-2222222222222222", "2026-11-22T02:30:00Z", PVC))
    done = _gate(fake)  # no BackupVolume synced yet
    assert done.returncode == 0 and "NotSynced" in _status(fake) and _held(fake)
    assert "waiting for it to name the latest one" in done.stdout and not _objects(fake, "volume")
    (fake / "backupvolumes.tsv").write_text(_backup_volume("backup-5555555555555555"))  # not listed yet
    done = _gate(fake)
    assert "is not listed as completed yet" in done.stderr and not _objects(fake, "volume")
    (fake / "backupvolumes.tsv").write_text(_backup_volume("backup-1111111111111111"))
    done = _gate(fake)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    volume = json.loads(_objects(fake, "volume")[0].read_text())
    assert volume["metadata"]["name"] == f"{PVC}-1111111111111111"  # Longhorn's choice, not the newest listed
