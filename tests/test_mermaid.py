"""Every Mermaid diagram hkgen generates parses and renders with the real Mermaid library (npm
`mermaid@11`) in a real browser (Debian's headless Chromium), as a forge would show it.

All diagrams of all cases go into one page and one browser run (a Chromium start costs about two
seconds). Mermaid comes from `$HKGEN_MERMAID_JS`, else from the folder `.ci/run` installs it into
(`$HKGEN_TOOLS_DIR`, default /opt/hkgen-tools, outside the repository); Chromium from PATH.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import missing
from hkgen.areas.readme import label
from hkgen.core.proc import run
from hkgen.pipeline import render_cluster

HOME_CLUSTER = Path(__file__).resolve().parents[1] / "clusters" / "home"
TOOLS = Path(os.environ.get("HKGEN_TOOLS_DIR", "/opt/hkgen-tools"))
MERMAID_JS = Path(os.environ.get("HKGEN_MERMAID_JS", TOOLS / "node/node_modules/mermaid/dist/mermaid.min.js"))
FENCE = re.compile(r"^```mermaid\n(.*?)\n```$", re.S | re.M)
# Text that tries every trick on a Mermaid label: quotes, brackets, arrows, entities, HTML,
# Markdown, comments, directives, statement separators, non-ASCII and astral characters.
HOSTILE = [
    'say "hi" ]) --> x[evil',
    "<script>alert(1)</script> <b>bold</b> &amp; &lt;",
    "a;b %% not a comment #35; #quot; `tick` | pipe",
    "%%{init: {'theme': 'dark'}}%% end subgraph graph click x call",
    "Küche ☕ 🏠 ǅ\u00a0nbsp \\ back\\slash {curly} [square] (round)",
    "&#60; &lt;b&gt; &amp;amp; a&b && &",
]


def _argocd(d: dict[str, Any]) -> None:
    d["gitops"]["engine"] = "argocd"


def _stand_by(d: dict[str, Any]) -> None:
    # A fourth control plane (a dqlite stand-by), no satellites, a frontend-less zigbee2mqtt.
    d["nodes"].append({"hostname": "cp4", "role": "control-plane", "schedulable": False, "board": "rpi4",
                       "memoryGiB": 4, "ip": "192.168.10.14", "mac": "dc:a6:32:10:00:14"})
    d["satellites"] = []
    d["zigbee"]["networks"] = [n for n in d["zigbee"]["networks"] if "node" in n["coordinator"]]
    d["apps"]["zigbee2mqtt"]["frontend"] = False
    d["cluster"]["description"] = HOSTILE[0]
    d["customApps"] = [{"name": "node-red", "image": "docker.io/nodered/node-red:4.0.9", "port": 1880,
                        "storage": {"sizeGiB": 2, "mountPath": "/data"}}]


def _single(d: dict[str, Any]) -> None:
    # One Pi, Argo CD, no Zigbee, only Home Assistant and Mosquitto.
    d["cluster"]["topology"] = "single-node"
    d["nodes"] = d["nodes"][:1]
    d["satellites"] = []
    d["zigbee"]["networks"] = []
    d["storage"]["longhorn"]["replicas"] = 1
    for app in ("grafana", "monitoring", "zigbee2mqtt"):
        d["apps"][app]["enabled"] = False
    d["gitops"]["engine"] = "argocd"


VARIANTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "flux": lambda d: None, "argocd": _argocd, "stand-by": _stand_by, "single": _single,
}


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _page(diagrams: dict[str, str]) -> str:
    # The diagrams travel as JSON in a script; '<' is escaped so no text can close the script tag.
    data = json.dumps(diagrams).replace("<", "\\u003c")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<script src="{MERMAID_JS.as_uri()}"></script></head><body><pre id="out">pending</pre><div id="shown"></div>
<script>
const DIAGRAMS = {data};
(async () => {{
  const results = {{}};
  try {{
    mermaid.initialize({{startOnLoad: false, securityLevel: "strict"}});
    let i = 0;
    for (const [name, text] of Object.entries(DIAGRAMS)) {{
      const r = {{parsed: false, rendered: false, error: null, text: ""}};
      try {{
        await mermaid.parse(text);
        r.parsed = true;
        const {{svg}} = await mermaid.render("d" + (i++), text);
        const holder = document.createElement("div");
        holder.innerHTML = svg;
        document.getElementById("shown").appendChild(holder);
        r.text = holder.textContent;
        r.rendered = !/Syntax error/.test(r.text);
      }} catch (e) {{
        r.error = String((e && e.message) || e);
      }}
      results[name] = r;
    }}
  }} catch (e) {{
    results["<page>"] = {{parsed: false, rendered: false, error: String(e), text: ""}};
  }}
  const bytes = new TextEncoder().encode(JSON.stringify(results));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  document.getElementById("out").textContent = "RESULT:" + btoa(bin) + ":END";
}})();
</script></body></html>"""


@dataclass(frozen=True)
class Outcome:
    """What the browser said about one diagram."""

    parsed: bool
    rendered: bool
    error: str | None
    text: str  # text content of the rendered SVG

    @property
    def ok(self) -> bool:
        return self.parsed and self.rendered and not self.error


def check_in_browser(diagrams: dict[str, str], workdir: Path) -> dict[str, Outcome]:
    """Parse and render every diagram with Mermaid in headless Chromium; one outcome per name."""
    browser = chromium()
    assert browser and MERMAID_JS.is_file()
    page = workdir / "diagrams.html"
    page.write_text(_page(diagrams), "utf-8")
    done = run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
                f"--user-data-dir={workdir / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
               timeout=120, env={"HOME": str(workdir)})
    found = re.search(r"RESULT:([A-Za-z0-9+/=]+):END", done.stdout)
    assert found, f"no result from the page (exit {done.returncode}): {done.tail()}"
    raw: dict[str, Any] = json.loads(base64.b64decode(found[1]).decode("utf-8"))
    return {name: Outcome(r["parsed"], r["rendered"], r["error"], html.unescape(r["text"])) for name, r in raw.items()}


def readme_diagrams(readme: str) -> list[str]:
    """The Mermaid blocks of a rendered README."""
    return FENCE.findall(readme)


def _render_readme(cluster_dir: Path) -> str:
    rendering = render_cluster(cluster_dir, verify=False)
    return next(v for k, v in rendering.tree.items() if str(k) == "README.md").decode("utf-8")


@pytest.fixture(scope="module")
def browser_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if chromium() is None or not MERMAID_JS.is_file():
        missing("needs Debian's chromium and npm mermaid@11 (.ci/run installs both)")
    cases: dict[str, str] = {}
    readmes: dict[str, str] = {}
    for variant, change in VARIANTS.items():
        work = tmp_path_factory.mktemp(f"cluster-{variant}")
        shutil.copy2(HOME_CLUSTER / "secrets.sops.yaml", work / "secrets.sops.yaml")
        data = yaml.safe_load((HOME_CLUSTER / "cluster.yaml").read_text())
        change(data)
        (work / "cluster.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        readmes[variant] = _render_readme(work)
        for i, block in enumerate(readme_diagrams(readmes[variant])):
            cases[f"{variant}/{i}"] = block
    hostile = ["flowchart LR"]
    hostile += [f'  h{i}["{label(t)}"] -->|"{label(t)}"| h{i}b["x"]' for i, t in enumerate(HOSTILE)]
    hostile.append(f'  subgraph g["{label(HOSTILE[0])}"]\n    h9["{label(HOSTILE[1])}"]\n  end')
    cases["hostile"] = "\n".join(hostile)
    cases["broken"] = 'flowchart LR\n  a["unclosed --> b'
    workdir = tmp_path_factory.mktemp("browser")
    return {"outcomes": check_in_browser(cases, workdir), "readmes": readmes, "cases": cases}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_readme_diagram_parses_and_renders(browser_results: dict[str, Any], variant: str) -> None:
    outcomes: dict[str, Outcome] = browser_results["outcomes"]
    mine = {k: v for k, v in outcomes.items() if k.startswith(f"{variant}/")}
    assert len(mine) >= 3, "the README should hold the topology, convergence and power-cut diagrams"
    failed = {k: v.error or "renders a syntax error" for k, v in mine.items() if not v.ok}
    assert not failed, failed


def test_rendered_diagrams_show_the_reference_cluster(browser_results: dict[str, Any]) -> None:
    outcomes: dict[str, Outcome] = browser_results["outcomes"]
    topology = outcomes["flux/0"].text
    for name in ["cp1", "cp2", "cp3", "w1", "w2", "w3", "w4", "w5", "w6", "zsat-garden", "zsat-attic",
                 "home-assistant", "mosquitto", "zigbee2mqtt-house", "zigbee2mqtt-garden", "zigbee2mqtt-attic",
                 "prometheus", "grafana-postgres", "Longhorn", "pinned: USB zigbee-house"]:
        assert name in topology, name
    convergence = outcomes["flux/1"].text
    for name in ["cluster-secrets", "crds", "controllers", "configs", "apps", "longhorn", "home-assistant",
                 "ssh://git@github.com/example/home-ops.git"]:
        assert name in convergence, name
    argo = outcomes["argocd/1"].text
    for name in ["sync wave -5", "argocd", "longhorn-helm", "home-assistant"]:
        assert name in argo, name


def test_hostile_labels_show_literally(browser_results: dict[str, Any]) -> None:
    outcome: Outcome = browser_results["outcomes"]["hostile"]
    assert outcome.ok, outcome.error
    shown = " ".join(outcome.text.split())
    for text in HOSTILE:
        assert " ".join(text.split()) in shown, text


def test_a_broken_diagram_is_reported(browser_results: dict[str, Any]) -> None:
    outcome: Outcome = browser_results["outcomes"]["broken"]
    assert not outcome.ok
    assert outcome.error and "Parse error" in outcome.error
