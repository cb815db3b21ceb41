"""verify.reparse reads libyaml's events instead of composed nodes: it must find exactly what
composing finds, each plain scalar that YAML 1.1 and 1.2 read apart and every file PyYAML's
composer refuses (a syntax error, an undefined alias, a duplicate anchor), at the same place."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from hkgen.areas.parts import Blueprint, OutputFile, freeze
from hkgen.config.model import Cluster
from hkgen.core.errors import Problem
from hkgen.verify import tree as verify

TEXTS = {
    "clean": "a: b\nc: [1, 2.5, true, null, 'on']\nd: |\n  on\n",
    "yaml11-bools": "a: on\nb: no\nc: Yes\nd: 'off'\n",
    "numbers": "a: 010\nb: 1:20\nc: 0o17\nd: 0x1F\ne: 1_000\nf: .5\ng: 1e3\n",
    "keys": "on: 1\n010: x\n",
    "tags": "a: !!str on\nb: !!int '3'\nc: ! on\nd: !custom 010\n",
    "anchors": "a: &x on\nb: *x\nc: &y {k: no}\nd: *y\n",
    "documents": "a: on\n---\nb: &x 1\n---\nc: &x 010\n",
    "undefined-alias": "a: 1\nb: *nowhere\n",
    "alias-of-another-document": "a: &x 1\n---\nb: *x\n",
    "duplicate-anchor": "a: &x 1\nb: &x on\n",
    "syntax": "a: [1, 2\nb: on\n",
    "tab": "a:\n\t- on\n",
    "flow": "{a: on, b: [no, 1:20], c: {d: 010}}\n",
    "sequence": "- on\n- - 010\n  - x\n- {a: y}\n",
    "empty": "",
    "comment-only": "# nothing\n",
}


@pytest.fixture(scope="module")
def cluster(home_model: Cluster) -> Cluster:
    return home_model


def _composed(blueprint: Blueprint, tree: dict[PurePosixPath, bytes]) -> list[Problem]:
    """The reference: every file composed with PyYAML, every plain scalar node compared."""
    problems: list[Problem] = []
    for path in sorted(tree):
        label, template = f"clusters/{blueprint.cluster.name}/{path}", blueprint.templates[path]
        try:
            roots = list(yaml.compose_all(tree[path].decode(), Loader=yaml.CSafeLoader))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problems.append(Problem(label, (mark.line + 1) if mark else 0, (mark.column + 1) if mark else 0, "$",
                                    f"rendered YAML does not parse (template {template}): "
                                    f"{getattr(err, 'problem', None) or err}"))
            continue
        seen: set[int] = set()
        stack: list[Any] = [r for r in roots if r is not None]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                reason = verify._ambiguity(node.tag, node.value) if not node.style else ""
                if reason:
                    problems.append(Problem(label, node.start_mark.line + 1, node.start_mark.column + 1, "$",
                                            f"unquoted {node.value[:40]!r} {reason} (template {template}); "
                                            "render the value with the yaml filter"))
            elif isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    stack.extend((key, value))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
    return sorted(problems)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_reparse_finds_what_composing_finds(cluster: Cluster, name: str) -> None:
    files = {f"platform/x/{name}.yaml": TEXTS[name], f"nodes/cp1/{name}": TEXTS[name]}
    outs = tuple(OutputFile(PurePosixPath(p), f"core/test/{Path(p).name}.j2", freeze({}),
                            "cloud-config" if p.startswith("nodes/") else "yaml") for p in files)
    blueprint = Blueprint(cluster, outs, ())
    tree = {PurePosixPath(p): t.encode() for p, t in files.items()}
    assert sorted(verify.reparse(blueprint, tree)) == _composed(blueprint, tree)


def test_the_cases_cover_every_outcome(cluster: Cluster) -> None:
    # Not a vacuous comparison: the reference finds ambiguities and refusals of each kind.
    outs = tuple(OutputFile(PurePosixPath(f"{n}.yaml"), f"core/test/{n}.j2", freeze({})) for n in TEXTS)
    blueprint = Blueprint(cluster, outs, ())
    found = [p.format() for p in _composed(blueprint, {PurePosixPath(f"{n}.yaml"): t.encode()
                                                         for n, t in TEXTS.items()})]
    for needle in ("yaml11-bools.yaml:1:4: $: unquoted 'on' reads as bool in YAML 1.1 but as str",
                   "found undefined alias", "undefined-alias.yaml:2:4",
                   "alias-of-another-document.yaml:3:4", "duplicate-anchor.yaml:2:4: $: rendered YAML does not parse",
                   "numbers.yaml:1:4: $: unquoted '010'", "keys.yaml:1:1", "anchors.yaml:1:4", "flow.yaml:1:5",
                   "syntax.yaml:", "tab.yaml:"):
        assert any(needle in line for line in found), (needle, found)
    assert not any("clean.yaml" in line or "empty.yaml" in line for line in found)
