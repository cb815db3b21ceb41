"""The cloud-config schema check taken key by key (and write_files item by item, cached) finds
exactly the problems the whole-document validation finds, on the reference seeds and on
hypothesis' mutations of them; a schema that cannot be split is validated whole.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hkgen.config.load import Document, load_generated
from hkgen.verify import cloudinit as cloudinit_check

REPO = Path(__file__).resolve().parents[1]
USER_DATA = sorted((REPO / "clusters/home").glob("*/*/user-data"))
SCHEMA = json.loads((REPO / "schemas/cloud-config.schema.json").read_text("utf-8"))

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "root:root", "0644", "gz", "/etc/x"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["path", "content", "owner", "permissions", "encoding", "append", "defer",
                                       "name", "sudo", "lock-passwd", "bogus", "uri"]), children, max_size=3),
    max_leaves=6,
)


def _whole(doc: Document) -> list[str]:
    return sorted(p.format() for p in cloudinit_check._schema_problems(doc, cloudinit_check._cloud_config_validator()))


def _split(doc: Document) -> list[str]:
    return sorted(p.format() for p in cloudinit_check._located(doc, cloudinit_check._cloud_config_errors(doc.data)))


def test_hkgens_cloud_config_schema_splits_by_key() -> None:
    assert cloudinit_check._decomposable(SCHEMA) is not None
    assert cloudinit_check._split_validators() is not None


@pytest.mark.parametrize("change", [
    lambda s: s.update(required=["runcmd"]),  # a rule across keys at the top
    lambda s: s.update(anyOf=[{"required": ["runcmd"]}]),
    lambda s: s.update(dependentRequired={"snap": ["runcmd"]}),
    lambda s: s.update(patternProperties={"^x-": {}}),
    lambda s: s["properties"]["write_files"].update(maxItems=3),
    lambda s: s["properties"]["write_files"].update(minItems=2),
    lambda s: s.update(additionalProperties={"type": "string"}),
    lambda s: s["properties"].update(runcmd=True),
])
def test_a_schema_with_rules_across_keys_is_validated_whole(change: Any) -> None:
    schema = copy.deepcopy(SCHEMA)
    change(schema)
    assert cloudinit_check._decomposable(schema) is None


@pytest.mark.parametrize("path", USER_DATA, ids=lambda p: p.parent.name)
def test_split_check_equals_whole_check_on_the_reference_seeds(path: Path) -> None:
    doc = load_generated(path.read_text("utf-8"), str(path))
    assert _split(doc) == _whole(doc) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_split_check_equals_whole_check_on_broken_user_data(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(USER_DATA))
    doc = load_generated(path.read_text("utf-8"), path.name)
    body = doc.data
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["top", "new", "item", "drop"]))
        if where == "top":
            body[data.draw(st.sampled_from(sorted(body)))] = data.draw(_VALUES)
        elif where == "new":
            new_key = data.draw(st.sampled_from(["runcmds", "write_file", "ssh_pw_auth", "users", "apt"]))
            body[new_key] = data.draw(_VALUES)
        elif where == "item" and isinstance(body.get("write_files"), list) and body["write_files"]:
            index = data.draw(st.integers(0, len(body["write_files"]) - 1))
            item = body["write_files"][index]
            if isinstance(item, dict):
                item[data.draw(st.sampled_from(["path", "content", "encoding", "defer", "bogus", "source"]))] = (
                    data.draw(_VALUES))
            else:
                body["write_files"][index] = data.draw(_VALUES)
        elif where == "drop" and body:
            body.pop(data.draw(st.sampled_from(sorted(body))))
    assert _split(doc) == _whole(doc)
