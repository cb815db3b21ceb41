"""Changes the GitOps engine cannot apply by itself (transitions.py): a StatefulSet's volume
templates, Longhorn's replica count for existing volumes, a removed StatefulSet's claims. `render`
compares with the tree on disk, `publish` with the commit the cluster follows; both print a located
warning with the commands that carry the change out."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import HOME_CLUSTER
from hkgen.output.transitions import KINDS, changes, statefulset_volumes, volume_template_changes

STS = PurePosixPath("apps/home-assistant/statefulset.yaml")
SC = PurePosixPath("platform/configs/longhorn-config/storage-classes.yaml")
_BASE = (HOME_CLUSTER / STS).read_bytes()


def _tree() -> dict[PurePosixPath, bytes]:
    return {PurePosixPath(p.relative_to(HOME_CLUSTER).as_posix()): p.read_bytes()
            for p in HOME_CLUSTER.rglob("*.yaml")}


def _edit(data: bytes, old: str, new: str) -> bytes:
    text = data.decode()
    assert old in text, old
    return text.replace(old, new).encode()


def test_every_rendered_statefulset_volume_is_found_with_its_position() -> None:
    found = {}
    for rel, data in _tree().items():
        for key, vt in statefulset_volumes(data).items():
            found[key] = vt
            line = data.decode().splitlines()[vt.line - 1]
            assert line == " " * (vt.col - 1) + "volumeClaimTemplates:", (rel, line)
            doc = next(d for d in yaml.safe_load_all(data) if d and d.get("kind") == "StatefulSet"
                       and d["metadata"]["name"] == vt.statefulset)
            template = doc["spec"]["volumeClaimTemplates"][vt.index]
            assert template["spec"]["resources"]["requests"]["storage"] == vt.size
            assert template["spec"]["storageClassName"] == vt.storage_class
    assert ("home-automation", "home-assistant", "config") in found
    assert found[("home-automation", "home-assistant", "config")].claims() == ["config-home-assistant-0"]
    # One per Zigbee network, each its own StatefulSet.
    assert len([k for k in found if k[1].startswith("zigbee2mqtt-")]) == 3


def test_an_unchanged_tree_gives_nothing() -> None:
    tree = _tree()
    assert changes(tree, tree, "clusters/home") == []
    assert {rel for rel, data in tree.items() if any(k.encode() in data for k in KINDS)} >= {STS, SC}


def test_a_new_replica_count_says_how_existing_volumes_follow() -> None:
    old = _tree()[SC]
    new = old.replace(b"numberOfReplicas: '3'", b"numberOfReplicas: '2'")
    (problem,) = changes({SC: old}, {SC: new}, "clusters/home")  # one warning, not one per class
    assert (problem.file, problem.path, problem.severity) == (f"clusters/home/{SC}", "$.parameters.numberOfReplicas",
                                                              "warning")
    assert new.decode().splitlines()[problem.line - 1] == " " * (problem.col - 1) + "numberOfReplicas: '2'"
    assert "(3 -> 2)" in problem.message and "existing volumes keep theirs" in problem.message
    assert """patch {} --type merge -p '{"spec":{"numberOfReplicas":2}}'""" in problem.hint
    assert changes({SC: old}, {SC: old.replace(b"fsType: ext4", b"fsType: xfs")}, "c") == []


def test_growing_a_volume_names_the_claim_to_patch_then_the_orphan_delete() -> None:
    old = _tree()[STS]
    new = _edit(old, "storage: 10Gi", "storage: 20Gi")
    (problem,) = volume_template_changes({STS: old}, {STS: new}, "clusters/home")
    assert problem.severity == "warning"
    assert problem.file == f"clusters/home/{STS}" and problem.path == "$.spec.volumeClaimTemplates[0]"
    assert "size 10Gi -> 20Gi" in problem.message
    commands = problem.hint.removeprefix("once this is published, run: ").split(" (the pods keep")[0].split(" && ")
    assert commands == [
        "kubectl -n home-automation patch pvc config-home-assistant-0 -p "
        """'{"spec":{"resources":{"requests":{"storage":"20Gi"}}}}'""",
        "kubectl -n home-automation delete statefulset home-assistant --cascade=orphan",
    ]


def test_a_new_backup_class_moves_the_volume_to_its_job_group() -> None:
    old = _tree()[STS]
    new = _edit(old, "storageClassName: longhorn-critical", "storageClassName: longhorn-local")
    (problem,) = volume_template_changes({STS: old}, {STS: new}, "c")
    assert "storage class longhorn-critical -> longhorn-local" in problem.message
    assert ("recurring-job-group.longhorn.io/critical- recurring-job-group.longhorn.io/local=enabled"
            in problem.hint)
    assert "get pvc config-home-assistant-0 -o jsonpath='{.spec.volumeName}'" in problem.hint


def test_a_smaller_size_is_explained_not_patched() -> None:
    old = _tree()[STS]
    new = _edit(old, "storage: 10Gi", "storage: 5Gi")
    (problem,) = volume_template_changes({STS: old}, {STS: new}, "c")
    assert "cannot shrink" in problem.message and "patch pvc" not in problem.hint
    assert "delete statefulset home-assistant --cascade=orphan" in problem.hint


def test_a_renamed_statefulset_is_a_removal_not_a_template_change() -> None:
    old = _tree()[STS]
    renamed = _edit(old, "name: home-assistant\n  namespace", "name: home-assistant-2\n  namespace")
    (problem,) = volume_template_changes({STS: old}, {STS: _edit(renamed, "storage: 10Gi", "storage: 20Gi")}, "c")
    assert "home-automation/home-assistant is removed" in problem.message and "Zigbee" not in problem.hint
    assert [p.message for p in volume_template_changes({STS: old}, {}, "c")] == [problem.message]


@given(st.integers(1, 4096), st.integers(1, 4096), st.sampled_from(["critical", "local", "none"]),
       st.sampled_from(["critical", "local", "none"]))
def test_warning_exactly_when_size_or_class_differ(a: int, b: int, ca: str, cb: str) -> None:
    old = _edit(_edit(_BASE, "storage: 10Gi", f"storage: {a}Gi"), "storageClassName: longhorn-critical",
                f"storageClassName: longhorn-{ca}")
    new = _edit(_edit(_BASE, "storage: 10Gi", f"storage: {b}Gi"), "storageClassName: longhorn-critical",
                f"storageClassName: longhorn-{cb}")
    problems = volume_template_changes({STS: old}, {STS: new}, "c")
    assert len(problems) == int((a, ca) != (b, cb))
    if problems:
        hint = problems[0].hint
        assert ("patch pvc" in hint) == (b > a)
        assert ("recurring-job-group" in hint) == (ca != cb)
        assert hint.count("--cascade=orphan") == 1



def test_cli_render_prints_the_commands_once(home_copy: Path, hkgen) -> None:
    first = hkgen("render", "-q", str(home_copy))
    assert first.returncode == 0, first.stdout + first.stderr
    cluster = home_copy / "cluster.yaml"
    text = cluster.read_text()
    cluster.write_text(re.sub(r"(  home-assistant:\n(?:    .*\n)*?    storageGiB:) 10", r"\1 12", text, count=1))
    second = hkgen("render", "-q", str(home_copy))
    assert second.returncode == 0, second.stdout + second.stderr
    (line,) = [ln for ln in second.stdout.splitlines() if "volumeClaimTemplates" in ln]
    # At the cluster.yaml entry the user changed; the generated file follows as a note.
    at = re.match(rf"{re.escape(str(cluster))}:(\d+):\d+: "
                  r"\$\.apps\.home-assistant: warning: StatefulSet home-automation/home-assistant: "
                  r"volume 'config' changes \(size 10Gi -> 12Gi\)", line)
    assert at, line
    assert cluster.read_text().splitlines()[int(at.group(1)) - 1].strip() == "home-assistant:"
    assert f"(generated: {home_copy}/apps/home-assistant/statefulset.yaml:" in line
    assert "patch pvc config-home-assistant-0" in line and "Traceback" not in second.stderr
    third = hkgen("render", "-q", str(home_copy))
    assert third.returncode == 0 and "volumeClaimTemplates" not in third.stdout  # the tree on disk has it now


def test_a_removed_statefulset_says_where_its_data_stays() -> None:
    tree = _tree()
    garden = PurePosixPath("apps/zigbee2mqtt/statefulset-garden.yaml")
    after = {rel: data for rel, data in tree.items() if rel != garden}
    (problem,) = changes(tree, after, "clusters/home")
    assert problem.file == f"clusters/home/{garden}" and problem.severity == "warning"
    assert "StatefulSet home-automation/zigbee2mqtt-garden is removed" in problem.message
    assert "data-zigbee2mqtt-garden-0" in problem.message
    assert "if this is a rename" in problem.hint and "pairing every device again" in problem.hint
    assert problem.hint.endswith("kubectl -n home-automation delete pvc data-zigbee2mqtt-garden-0")
    # Moved to another file is no removal.
    moved = {**after, PurePosixPath("apps/zigbee2mqtt/moved.yaml"): tree[garden]}
    assert changes(tree, moved, "c") == []


def test_only_yaml_files_are_compared() -> None:
    text = b"# notes\n\nkind: StatefulSet {{ not yaml: [\n"
    readme = PurePosixPath("README.md")
    assert changes({readme: text}, {}, "c") == []
    assert changes({PurePosixPath("x.yaml"): text}, {}, "c") == []  # unparsable: nothing to compare


_KEYS = st.sampled_from(["kind", "metadata", "name", "namespace", "spec", "replicas", "volumeClaimTemplates",
                         "resources", "requests", "storage", "storageClassName", "parameters", "numberOfReplicas"])


def _nested(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4)


_SHAPES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8), _nested, max_leaves=12)


@given(_SHAPES, st.sampled_from(["StatefulSet", "StorageClass"]))
def test_old_files_of_any_shape_never_raise(body: object, kind: str) -> None:
    # An old file may have been edited by hand (or come from any commit): compare, never crash.
    doc = {"kind": kind, **body} if isinstance(body, dict) else {"kind": kind, "spec": body}
    old = yaml.safe_dump(doc).encode()
    tree = _tree()
    changes({STS: old, SC: old}, tree, "c")
    changes(tree, {STS: old, SC: old}, "c")


def test_new_network_settings_of_an_existing_pi_say_it_must_be_reflashed() -> None:
    seed = PurePosixPath("nodes/w6/network-config")
    old = (HOME_CLUSTER / seed).read_bytes()
    new = _edit(old, "192.168.10.26/24", "192.168.10.27/24")
    user_data = PurePosixPath("nodes/w6/user-data")
    hosts = (HOME_CLUSTER / user_data).read_bytes()
    (problem,) = changes({seed: old, user_data: hosts}, {seed: new, user_data: hosts + b"# more\n"}, "clusters/home")
    assert (problem.file, problem.line, problem.col, problem.severity) == ("clusters/home/nodes/w6/network-config",
                                                                           0, 0, "warning")
    assert "w6's network settings change" in problem.message and "keeps its current ones" in problem.message
    assert "hkgen boot-media clusters/home --node w6" in problem.hint
    # A new Pi (no seed before) and an unchanged one are no transition; other seed files are not compared.
    assert changes({}, {seed: new}, "c") == [] and changes({seed: old}, {seed: old}, "c") == []
