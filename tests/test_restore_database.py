"""The restore gate's database branch (issue 19): the gate, not Git, decides how a CloudNativePG
database starts and creates its Cluster itself, from the two variants hkgen renders next to it.

No Kubernetes cluster and no S3 service run here: the gate script runs with real `sh` against the
stand-in `kubectl` (objects as files, `kubectl create -f FILE` answering AlreadyExists like the API
server) and the stand-in AWS CLI on a folder as the bucket, both from tests/test_restore.py. The
variants it creates are the real ones of the reference cluster's render.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

from hkgen.pipeline import Rendering
from test_restore import _gate, _render, _status, fake  # noqa: F401 - `fake` is a fixture

NS, DB = "monitoring", "grafana-db"
ARCHIVE = "home/postgres/grafana-db/"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    """The reference cluster rendered and verified."""
    return _render(tmp_path_factory.mktemp("home"))


@pytest.fixture
def manifests(home: Rendering, tmp_path: Path) -> Path:
    """The ConfigMap `hkgen-restore-db-grafana-db` as the gate Job mounts it (one file per key)."""
    text = home.tree[PurePosixPath("platform/configs/restore-gate/databases.yaml")].decode()
    cm = next(d for d in YAML(typ="safe", pure=True).load_all(text) if d and d["metadata"]["name"].endswith(DB))
    folder = tmp_path / "manifests"
    folder.mkdir()
    for key, value in cm["data"].items():
        (folder / key).write_text(value)
    return folder


def _db_gate(state: Path, manifests: Path) -> Any:
    return _gate(state, GATE_KIND="database", NAMESPACE=NS, DB_CLUSTER=DB, DB_NAME="grafana", ARCHIVE=ARCHIVE,
                 MANIFESTS=str(manifests), FIELD_MANAGER="hkgen-restore-gate")


def _cluster(state: Path) -> dict[str, Any] | None:
    path = state / "objects" / "pgcluster" / f"{NS}_{DB}"
    return json.loads(path.read_text()) if path.exists() else None


def _put(state: Path, key: str) -> None:
    path = state / "s3" / "bucket" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def _creates(state: Path) -> list[str]:
    calls = (state / "calls.log").read_text().splitlines() if (state / "calls.log").exists() else []
    return [c for c in calls if c.startswith("kubectl create --field-manager")]


def test_first_install_creates_a_new_database(fake: Path, manifests: Path) -> None:  # noqa: F811
    done = _db_gate(fake, manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    cluster = _cluster(fake)
    assert cluster is not None and cluster["manager"] == "hkgen-restore-gate"  # not kubectl-*: Flux would take it
    assert cluster["spec"]["bootstrap"] == {"initdb": {"database": "grafana", "owner": "grafana"}}
    # A new timeline-1 database keeps CloudNativePG's check that its WAL folder is empty.
    assert "cnpg.io/skipEmptyWalArchiveCheck" not in cluster["metadata"]["annotations"]
    assert "New" in _status(fake) and "created empty" in done.stdout


def test_rebuild_recovers_into_the_same_folder(fake: Path, manifests: Path) -> None:  # noqa: F811
    _put(fake, ARCHIVE + "base/20261120T023000/backup.info")
    _put(fake, ARCHIVE + "base/20261120T023000/data.tar.gz")
    _put(fake, ARCHIVE + "wals/0000000100000000/000000010000000000000007.gz")
    done = _db_gate(fake, manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    cluster = _cluster(fake)
    assert cluster is not None
    assert cluster["spec"]["bootstrap"]["recovery"]["source"] == "backups"
    source = cluster["spec"]["externalClusters"][0]["plugin"]["parameters"]
    archive = cluster["spec"]["plugins"][0]["parameters"]
    assert source["serverName"] == DB and "serverName" not in archive  # reads and writes the same folder
    assert source["barmanObjectName"] == archive["barmanObjectName"]
    assert cluster["metadata"]["annotations"]["cnpg.io/skipEmptyWalArchiveCheck"] == "enabled"
    assert "Recover" in _status(fake)
    assert not (fake / "s3" / "bucket" / ARCHIVE / "wals" / "0000000100000000").is_file()  # nothing touched
    assert len(list((fake / "s3" / "bucket").rglob("*.*"))) == 3


def _live(state: Path, doc: dict[str, Any]) -> Path:
    path = state / "objects" / "pgcluster" / f"{NS}_{DB}"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**doc, "metadata": {**doc["metadata"], "resourceVersion": "7"}}))
    return path


@pytest.mark.parametrize("started", ["initdb", "recovery", "adopted"])
def test_running_cluster_is_never_touched(fake: Path, manifests: Path, started: str) -> None:  # noqa: F811
    _put(fake, ARCHIVE + "base/20261120T023000/backup.info")
    variant = "initdb" if started == "adopted" else started
    doc = YAML(typ="safe", pure=True).load((manifests / f"{variant}.yaml").read_text())
    doc["metadata"]["annotations"]["hkgen.io/bootstrap"] = started
    path = _live(fake, doc)
    before = path.read_bytes()
    done = _db_gate(fake, manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Present" in _status(fake) and path.read_bytes() == before and _creates(fake) == []
    calls = (fake / "calls.log").read_text()
    assert "aws " not in calls and "kubectl apply" not in calls  # no S3 needed, nothing changed


LEGACY = {  # what an hkgen before the gate made the Clusters rendered: bootstrap from Git, gen 1 or N > 1
    "initdb": ({"initdb": {"database": "grafana", "owner": "grafana", "encoding": "UTF8"}}, None),
    "generation 3": ({"recovery": {"source": "previous-generation", "database": "grafana", "owner": "grafana"}},
                     [{"name": "previous-generation", "plugin": {
                         "name": "barman-cloud.cloudnative-pg.io",
                         "parameters": {"barmanObjectName": "grafana-db-backup", "serverName": "grafana-db-g2"}}}]),
}


@pytest.mark.parametrize("legacy", sorted(LEGACY))
def test_cluster_from_before_the_gate_keeps_its_bootstrap(fake: Path, manifests: Path, legacy: str) -> None:  # noqa: F811
    """A Cluster made when Git still held its bootstrap: the engine owns that field and would drop it
    on applying the Cluster without one (CloudNativePG would then default it to a database `app`). The
    gate co-owns exactly the live values once, by server-side apply, and changes nothing else."""
    boot, external = LEGACY[legacy]
    doc = YAML(typ="safe", pure=True).load((manifests / "initdb.yaml").read_text())
    del doc["metadata"]["annotations"]
    doc["spec"]["bootstrap"] = boot
    if external:
        doc["spec"]["externalClusters"] = external
    path = _live(fake, doc)
    done = _db_gate(fake, manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    applied = [json.loads(line) for line in (fake / "applies.log").read_text().splitlines()]
    assert len(applied) == 1 and applied[0]["metadata"]["resourceVersion"] == "7"
    assert applied[0]["spec"] == ({"bootstrap": boot} | ({"externalClusters": external} if external else {}))
    live = json.loads(path.read_text())
    assert live["spec"] == doc["spec"] and live["coowners"]["hkgen-restore-gate"] == sorted(applied[0]["spec"])
    assert live["metadata"]["annotations"] == {"hkgen.io/bootstrap": "adopted"} and _creates(fake) == []
    again = _db_gate(fake, manifests)  # once: the next run finds it adopted
    assert again.returncode == 0 and len((fake / "applies.log").read_text().splitlines()) == 1


def test_adoption_of_a_cluster_changed_meanwhile_is_retried(fake: Path, manifests: Path) -> None:  # noqa: F811
    doc = YAML(typ="safe", pure=True).load((manifests / "initdb.yaml").read_text())
    del doc["metadata"]["annotations"]
    path = _live(fake, doc)
    # The stand-in kubectl answers the first read from before a change, as if it landed in between.
    real = fake.parent / "bin" / "kubectl.py"
    real.write_text(real.read_text().replace('print(doc["metadata"].get("resourceVersion", "1")', 'print("6"', 1))
    done = _db_gate(fake, manifests)
    assert done.returncode != 0 and "ApiError" in _status(fake) and "Conflict" in done.stderr
    assert json.loads(path.read_text())["metadata"]["resourceVersion"] == "7"  # nothing applied


def test_cluster_re_created_by_the_engine_without_the_gate_stops(fake: Path, manifests: Path) -> None:  # noqa: F811
    """A Cluster deleted by hand can come back from Git before the gate runs: no bootstrap, so
    CloudNativePG's defaults (database `app`) started it empty. The gate says so and fails."""
    _put(fake, ARCHIVE + "base/20261120T023000/backup.info")
    doc = YAML(typ="safe", pure=True).load((manifests / "initdb.yaml").read_text())
    del doc["metadata"]["annotations"]
    doc["spec"]["bootstrap"] = {"initdb": {"database": "app", "owner": "app"}}  # the webhook's defaults
    path = _live(fake, doc)
    done = _db_gate(fake, manifests)
    assert done.returncode != 0
    assert "NotCreatedByGate" in _status(fake) and "RECOVERY.md" in done.stdout and _creates(fake) == []
    assert not (fake / "applies.log").exists()  # its wrong bootstrap is not adopted
    # RECOVERY.md: delete it; the gate's next attempt recovers it from the backups.
    path.unlink()
    again = _db_gate(fake, manifests)
    assert again.returncode == 0 and "Recover" in _status(fake)
    assert (_cluster(fake) or {})["metadata"]["annotations"]["hkgen.io/bootstrap"] == "recovery"


def test_create_racing_another_attempt_is_success(fake: Path, manifests: Path) -> None:  # noqa: F811
    (fake / "race").write_text("")  # another gate Job creates the Cluster between our get and our create
    done = _db_gate(fake, manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created meanwhile by another attempt" in done.stdout
    assert (_cluster(fake) or {})["manager"] == "another attempt" and len(_creates(fake)) == 1


def test_unreachable_s3_creates_nothing_and_is_retried(fake: Path, manifests: Path) -> None:  # noqa: F811
    _put(fake, ARCHIVE + "base/20261120T023000/backup.info")
    (fake / "s3-down").write_text("")
    done = _db_gate(fake, manifests)
    assert done.returncode != 0  # the Job retries; an unknown bucket never reads as "no backups"
    assert "TargetUnreachable" in _status(fake) and _cluster(fake) is None and _creates(fake) == []
    (fake / "s3-down").unlink()
    again = _db_gate(fake, manifests)
    assert again.returncode == 0 and (_cluster(fake) or {})["spec"]["bootstrap"].keys() == {"recovery"}


def test_wal_without_a_base_backup_stops(fake: Path, manifests: Path) -> None:  # noqa: F811
    _put(fake, ARCHIVE + "wals/0000000100000000/000000010000000000000001.gz")
    done = _db_gate(fake, manifests)
    assert done.returncode != 0 and "NoBackup" in _status(fake) and _cluster(fake) is None
    shutil.rmtree(fake / "s3" / "bucket" / "home")  # RECOVERY.md: the folder moved away on purpose
    again = _db_gate(fake, manifests)
    assert again.returncode == 0 and "New" in _status(fake)
