"""The per-cluster README (clusters/<name>/README.md): what the cluster is, as a forge shows it.

It holds a node table, the apps with their addresses, the Zigbee networks and satellites, the
headline figures of `hkgen plan`, and Mermaid diagrams (forges render them in Markdown): the topology
(nodes, satellites, where each stateful app may run, where its volumes replicate), the
convergence order the GitOps engine follows on a cold start, and timelines of the predicted
recoveries. Everything is computed here from the model, the components and the analysis; the
template only lays it out. Every text from cluster.yaml is escaped for where it lands: Markdown
cells (`md`, `code`) or Mermaid labels (`label`), so no value can break a table or a diagram.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..config.catalogue import Workload
from ..config.model import Cluster, Node, ZigbeeNetwork
from .parts import LAYERS, Component, OutputFile, freeze

__all__ = [
    "Convergence",
    "app_addresses",
    "code",
    "convergence",
    "diagrams",
    "files",
    "label",
    "md",
    "topology",
]

# Characters a Mermaid label may hold literally inside "..."; everything else becomes an entity
# code (#60; for '<'), which Mermaid turns back into that character as text, never as syntax or HTML.
_LABEL_SAFE = re.compile(r"[A-Za-z0-9 .,:/_+()@=-]")
# Markdown punctuation that could start markup (emphasis, links, HTML, tables, headings, code).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!~&])")

# Objects of the GitOps engines the convergence diagram names (they are created by gitops.py;
# tests/test_readme.py checks the diagram against the rendered objects).
FLUX_BOOTSTRAP_SOURCE = "flux-system"  # the GitRepository `flux bootstrap` creates; every layer reads it
ARGO_ROOT = "root"
ARGO_SELF = ("argocd", -5)  # Argo CD manages itself, before every other wave


def label(text: str) -> str:
    """`text` for a Mermaid label inside double quotes: anything but plain characters as #code;.

    Mermaid (11) turns `#38;` into `&#38;` and then reads the label's entities once more, so a
    literal '&' must arrive as `&amp;` after the first step: it is written `#38;amp#59;`.
    tests/test_mermaid.py checks in a browser that hostile text shows exactly as written.
    """
    return "".join(c if _LABEL_SAFE.fullmatch(c) else "#38;amp#59;" if c == "&" else f"#{ord(c)};" for c in text)


def md(text: str) -> str:
    """`text` as literal Markdown text (one line): markup characters backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def code(text: str) -> str:
    """`text` as an inline code span that also survives a Markdown table cell."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _lines(*parts: str) -> str:
    """A multi-line Mermaid label from already escaped parts."""
    return "<br/>".join(p for p in parts if p)


def _count(items: int | Sized, word: str) -> str:
    n = items if isinstance(items, int) else len(items)
    return f"{n} {word}" + ("" if n == 1 else "s")


def _gib(size: float) -> str:
    return f"{size:g} GiB"


# --- apps and addresses ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """Where people or devices reach an app."""

    url: str
    what: str  # "web UI", "fixed LAN address", ...


def _files_with(component: Component, key: str) -> Iterable[Mapping[str, Any]]:
    for f in component.files:
        value = f.context.get(key)
        if isinstance(value, Mapping):
            yield value


def app_addresses(cluster: Cluster, component: Component) -> list[Address]:
    """Web addresses (ingress, `https://<host>.<domain>`) and load-balancer addresses of an app.

    A catalogue app is reached where its app.yaml `expose` says: a `host` is served by the
    ingress (an app with one ingress per Zigbee network has one address per network), a
    `loadBalancer` gets its fixed LAN address from the app's `loadBalancerIP` setting. A custom
    app's addresses come from its planned files.
    """
    from ..config.catalogue import load_catalogue

    out: list[Address] = []
    spec = load_catalogue().get(component.name)
    config = cluster.app(component.name)
    if spec is not None and config is not None:
        expose = dict(spec.expose)
        ports = dict(spec.ports)
        host = expose.get("host")
        per_item = sorted({i["host"] for f in component.files if _is_ingress(f.template)
                           for i in [f.context.get("item")] if isinstance(i, Mapping) and i.get("host")})
        item_ingress = any(f.each and _is_ingress(f.template) for f in spec.files)
        if per_item:
            out += [Address(f"https://{h}", f"web UI ({h.split('.', 1)[0].removeprefix(f'{host}-')})")
                    for h in per_item]
        elif host and not item_ingress:
            out.append(Address(f"https://{host}.{cluster.domain}", "web UI"))
        ip = config.settings.get("loadBalancerIP")
        if expose.get("loadBalancer") and ip:
            port_name = str(expose.get("port", ""))
            port = ports.get(port_name)
            out.append(Address(f"{port_name}://{ip}:{port}" if port else str(ip), "fixed LAN address"))
        return out
    for custom in cluster.custom_apps:
        if custom.name != component.name:
            continue
        apps = list(_files_with(component, "app"))
        if custom.expose == "ingress":
            out.append(Address(f"https://{custom.name}.{cluster.domain}", "web UI"))
        ips = sorted({str(a["load_balancer_ip"]) for a in apps if a.get("load_balancer_ip")})
        out += [Address(f"http://{ip}:{custom.port}", "fixed LAN address") for ip in ips]
    return out


def _is_ingress(template: str) -> bool:
    return template.rsplit("/", 1)[-1].startswith("ingress")


# --- topology -------------------------------------------------------------------------------------

def _node_role(cluster: Cluster, node: Node) -> str:
    if node in cluster.voters:
        return "control plane, dqlite voter"
    if node in cluster.standbys:
        return "control plane, dqlite stand-by"
    return "control plane" if node.is_control_plane else "worker"


def _node_label(cluster: Cluster, node: Node) -> str:
    disks = " + ".join(f"{d.size_gb} GB" for d in node.disks)
    usb = ", ".join(label(u.name) for u in node.usb_devices)
    return _lines(
        f"<b>{label(node.hostname)}</b>",
        label(_node_role(cluster, node)),
        label(f"{node.board}, {node.memory_gib} GiB, {node.ip}" + (" (Wi-Fi)" if node.link == "wifi" else "")),
        f"Longhorn SSD {label(disks)}" if disks else "",
        f"USB: {usb}" if usb else "",
    )


def _workload_label(w: Workload) -> str:
    vols = ", ".join(f"{v.name} {_gib(v.size_gib)} ({v.backup_class})" for v in w.volumes)
    count = f"{w.replicas} instances on different nodes" if w.replicas > 1 else ""
    return _lines(f"<b>{label(w.name)}</b>", label(f"{w.kind}, {vols}" + (" each" if w.replicas > 1 else "")),
                  label(count))


def _zigbee_for(cluster: Cluster, w: Workload) -> ZigbeeNetwork | None:
    if w.item is None:
        return None
    return next((z for z in cluster.zigbee if z.name == w.item), None)


def topology(cluster: Cluster) -> str:
    """Mermaid flowchart: nodes, satellites, where each stateful app may run, where volumes replicate."""
    from ..analysis.capacity import all_workloads

    ids = {n.hostname: f"n{i}" for i, n in enumerate(cluster.nodes)}
    sat_ids = {s.hostname: f"s{i}" for i, s in enumerate(cluster.satellites)}
    stateful = [w for w in all_workloads(cluster) if w.stateful]
    runs = [n for n in cluster.nodes if n.schedulable]
    idle = [n for n in cluster.nodes if not n.schedulable]
    # Left to right: apps, then satellites and nodes stacked in columns, which stays readable at
    # the width a forge gives a Markdown page.
    lines = ["flowchart LR"]
    title = label(f"cluster {cluster.name}: MicroK8s {cluster.microk8s_channel}, {_count(cluster.nodes, 'node')}")
    lines.append(f'  subgraph cluster["{title}"]')
    lines.append("    direction TB")
    if runs:
        where = label(f"apps may run here ({_count(runs, 'schedulable node')})")
        lines.append(f'    subgraph runs["{where}"]')
        lines += [f'      {ids[n.hostname]}["{_node_label(cluster, n)}"]' for n in runs]
        lines.append("    end")
    if idle:
        lines.append(f'    subgraph noapps["{label("control plane only, no apps (NoSchedule)")}"]')
        lines += [f'      {ids[n.hostname]}["{_node_label(cluster, n)}"]' for n in idle]
        lines.append("    end")
    lines.append("  end")
    if cluster.satellites:
        lines.append(f'  subgraph sats["{label("satellites: USB radios over TCP (ser2net), outside the cluster")}"]')
        for s in cluster.satellites:
            devices = ", ".join(f"{d.name} :{d.port}" for d in s.serial_devices)
            text = _lines(f"<b>{label(s.hostname)}</b>", label(f"{s.board}, {s.ip}"
                                                                 + (" (Wi-Fi)" if s.link == "wifi" else "")),
                          label(devices))
            lines.append(f'    {sat_ids[s.hostname]}["{text}"]')
        lines.append("  end")
    storage = cluster.storage_nodes
    edges: list[str] = []
    if stateful:
        lines.append(f'  subgraph stateful["{label("stateful apps and their Longhorn volumes")}"]')
        for i, w in enumerate(stateful):
            lines.append(f'    a{i}["{_workload_label(w)}"]')
        lines.append("  end")
        for i, w in enumerate(stateful):
            net = _zigbee_for(cluster, w)
            if w.pinned_to and w.pinned_to in ids:
                why = f"pinned: USB {net.device}" if net and net.device else "pinned"
                edges.append(f'  a{i} ==>|"{label(why)}"| {ids[w.pinned_to]}')
            elif runs:
                edges.append(f"  a{i} --> runs")
            if net is not None and net.satellite in sat_ids:
                sat = cluster.satellite(net.satellite)
                port = next((d.port for d in sat.serial_devices if d.name == net.device), None)
                edges.append(f'  a{i} -.->|"{label(f"Zigbee over TCP :{port}")}"| {sat_ids[net.satellite]}')
        if storage:
            replicas = min(cluster.replicas, len(storage))
            text = _lines("<b>Longhorn</b>", label(f"{_count(replicas, 'replica')} of every volume"),
                          label(f"on {replicas} of the {_count(storage, 'storage node')}"))
            lines.append(f'  longhorn[("{text}")]')
            edges.append("  stateful -.-> longhorn")  # the count is in Longhorn's label
            edges += [f"  longhorn -.- {ids[n.hostname]}" for n in storage]
    lines += edges
    lines += [
        "  classDef cp fill:#dbeafe,stroke:#1d4ed8,color:#111",
        "  classDef worker fill:#dcfce7,stroke:#15803d,color:#111",
        "  classDef sat fill:#fef9c3,stroke:#a16207,color:#111",
        "  classDef app fill:#fae8ff,stroke:#a21caf,color:#111",
        "  classDef pinned fill:#fee2e2,stroke:#b91c1c,color:#111",
        "  classDef store fill:#f1f5f9,stroke:#334155,color:#111",
    ]
    cps = [ids[n.hostname] for n in cluster.nodes if n.is_control_plane]
    workers = [ids[n.hostname] for n in cluster.nodes if not n.is_control_plane]
    for cls, members in (("cp", cps), ("worker", workers), ("sat", list(sat_ids.values())),
                         ("app", [f"a{i}" for i, w in enumerate(stateful) if not w.pinned_to]),
                         ("pinned", [f"a{i}" for i, w in enumerate(stateful) if w.pinned_to]),
                         ("store", ["longhorn"] if stateful and storage else [])):
        if members:
            lines.append(f"  class {','.join(members)} {cls}")
    return "\n".join(lines)


# --- convergence ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Convergence:
    """The order the GitOps engine applies things in, as data and as a Mermaid flowchart.

    `edges` are (first, then) pairs of engine objects, "Kind/name": for Flux every
    `dependsOn` of a Kustomization or HelmRelease (the later object names the earlier one);
    for Argo CD, `waves` maps each Application to its sync wave.
    """

    engine: str
    edges: frozenset[tuple[str, str]]
    waves: Mapping[str, int]
    mermaid: str


def _component_label(comp: Component, cluster: Cluster) -> str:
    charts = [f"{r.chart.name} {r.chart.version}" for r in comp.releases]
    return _lines(f"<b>{label(comp.name)}</b>", *(label(c) for c in charts))


def _flux(cluster: Cluster, components: list[Component]) -> Convergence:
    from ..config.secrets import SECRET_NAME
    from .gitops import FLUX_TIMING

    by_name = {c.name: c for c in components}
    comp_ids = {c.name: f"c{i}" for i, c in enumerate(components)}
    edges: set[tuple[str, str]] = set()
    lines = ["flowchart TB"]
    repo = _lines("<b>Git</b>", label(cluster.repo_url), label(f"branch {cluster.repo_branch}"))
    lines.append(f'  git[("{repo}")]')
    lines.append(f'  src["{_lines("GitRepository " + label(FLUX_BOOTSTRAP_SOURCE), label("made by flux bootstrap"))}"]')
    lines.append(f'  srcsec["{_lines("GitRepository " + label(SECRET_NAME), label("only " + cluster.secrets_file))}"]')
    secrets_text = _lines(f"Kustomization <b>{label(SECRET_NAME)}</b>",
                          label(f"Secret {SECRET_NAME}, decrypted with sops-age"),
                          label(f"timeout {FLUX_TIMING['secrets'].timeout}"))
    lines.append(f'  ks_secrets["{secrets_text}"]')
    links = ["  git --> src", "  git --> srcsec", "  srcsec --> ks_secrets"]
    previous, previous_id = SECRET_NAME, "ks_secrets"
    for layer in LAYERS:
        members = [c for c in components if c.layer == layer]
        title = label(f"Kustomization {layer}, timeout {FLUX_TIMING[layer].timeout}")
        layer_id = f"ks_{layer}"
        if members:
            lines.append(f'  subgraph {layer_id}["{title}"]')
            # Mermaid lays unlinked members of a TB subgraph side by side (one row per layer).
            lines.append("    direction TB")
            lines += [f'    {comp_ids[c.name]}["{_component_label(c, cluster)}"]' for c in members]
            lines.append("  end")
        else:
            lines.append(f'  {layer_id}["{title}"]')
        links.append(f'  {previous_id} ==>|"dependsOn"| {layer_id}')
        if layer == LAYERS[0]:
            links.append(f'  src -.->|"{label("source of every layer")}"| {layer_id}')
        edges.add((f"Kustomization/{previous}", f"Kustomization/{layer}"))
        previous, previous_id = layer, layer_id
        # HelmRelease dependsOn only links releases inside one layer (the layers order the rest).
        for comp in members:
            for dep in comp.depends_on:
                other = by_name.get(dep)
                if other is None or other.layer != layer or not other.releases or not comp.releases:
                    continue
                links.append(f'  {comp_ids[dep]} -->|"HelmRelease dependsOn"| {comp_ids[comp.name]}')
                edges |= {(f"HelmRelease/{r.name}", f"HelmRelease/{mine.name}")
                          for r in other.releases for mine in comp.releases}
    lines += links
    return Convergence("flux", frozenset(edges), {}, "\n".join(lines))


def _argo_folder_app(comp: Component) -> bool:
    """True when gitops gives the component's folder an Application: the folder has a
    kustomization.yaml of its own or something for the one hkgen writes to list.
    """
    return any(
        f.path == PurePosixPath("kustomization.yaml")
        or (len(f.path.parts) == 1 and f.format == "yaml" and f.path.suffix in (".yaml", ".yml"))
        or (len(f.path.parts) == 2 and f.path.name == "kustomization.yaml")
        for f in comp.files
    )


def _argocd(cluster: Cluster, components: list[Component]) -> Convergence:
    from .gitops import application_names, sync_waves

    waves: dict[str, int] = {ARGO_SELF[0]: ARGO_SELF[1]}
    layer_of: dict[int, str] = {ARGO_SELF[1]: "Argo CD itself"}
    for comp, wave in sync_waves(components).items():
        c = next(x for x in components if x.name == comp)
        folder, releases = application_names(c)
        for name in ([folder] if folder and _argo_folder_app(c) else []) + sorted(releases.values()):
            waves[name] = wave
        layer_of.setdefault(wave, c.layer)
    lines = ["flowchart TB"]
    repo = _lines("<b>Git</b>", label(cluster.repo_url), label(f"branch {cluster.repo_branch}"))
    lines.append(f'  git[("{repo}")]')
    lines.append(f'  root["{_lines("Application <b>" + label(ARGO_ROOT) + "</b>", label("app of apps: argocd/"))}"]')
    links = ["  git --> root"]
    previous = "root"
    for i, wave in enumerate(sorted(set(waves.values()))):
        names = sorted(n for n, w in waves.items() if w == wave)
        title = label(f"sync wave {wave}: {layer_of.get(wave, '')}")
        lines.append(f'  subgraph w{i}["{title}"]')
        lines.append("    direction TB")  # members side by side, waves top to bottom
        lines += [f'    w{i}a{j}["{label(n)}"]' for j, n in enumerate(names)]
        lines.append("  end")
        links.append(f"  {previous} ==> w{i}")
        previous = f"w{i}"
    lines += links
    return Convergence("argocd", frozenset(), freeze({f"Application/{k}": v for k, v in waves.items()}),
                       "\n".join(lines))


def convergence(cluster: Cluster, components: list[Component]) -> Convergence:
    """The cold-start order of `components` under the cluster's GitOps engine."""
    if cluster.engine == "argocd":
        return _argocd(cluster, components)
    return _flux(cluster, components)


# --- timelines ------------------------------------------------------------------------------------

def _gantt_text(text: str) -> str:
    # Gantt task names end at ':' and lines at '#' or ';': keep names to plain characters.
    return re.sub(r"[^A-Za-z0-9 .,()/+-]", " ", text).strip() or "step"


def recovery_timeline(report: Mapping[str, Any]) -> str | None:
    """Mermaid gantt: predicted steps until each stateful app runs again after its node died."""
    recoveries = report["recovery"]
    if not recoveries:
        return None
    lines = ["gantt", "  title Back on another node after its node died (seconds, estimates)",
             "  dateFormat X", "  axisFormat %M:%S"]
    task = 0
    for rec in recoveries:
        lines.append(f"  section {_gantt_text(rec['workload'])}")
        steps = [(s["what"], int(s["seconds"])) for s in rec["steps"]]
        steps.append(("app starts", int(rec["app_start_seconds"])))
        first = True
        for what, seconds in steps:
            if seconds <= 0:
                continue
            lines.append(_task(what, task, first, seconds))
            first = False
            task += 1
    return "\n".join(lines)


def _task(what: str, task: int, first: bool, seconds: int) -> str:
    # `id, start, duration`; a step starts when the one before it ends. (With `dateFormat X`
    # Mermaid reads "start, end" pairs as starting at zero, so durations and `after` it is.)
    start = "0" if first else f"after t{task - 1}"
    return f"  {_gantt_text(what)} : t{task}, {start}, {seconds}s"


def power_cut_timeline(report: Mapping[str, Any]) -> str:
    """Mermaid gantt: the cold-start stages after a power cut (estimates)."""
    lines = ["gantt", "  title After a power cut (seconds, estimates for a Pi 4)", "  dateFormat X",
             "  axisFormat %M:%S"]
    for i, stage in enumerate(report["power_cut"]["order"]):
        lines.append(_task(stage["stage"], i, i == 0, int(stage["seconds"])))
    return "\n".join(lines)


def diagrams(cluster: Cluster, components: list[Component], report: Mapping[str, Any]) -> dict[str, str]:
    """Every Mermaid diagram of the README, by name (tests parse each with the real Mermaid)."""
    out = {"topology": topology(cluster), "convergence": convergence(cluster, components).mermaid,
           "power-cut": power_cut_timeline(report)}
    # With one node that runs apps there is no other node to come back on.
    recovery = recovery_timeline(report) if len(cluster.schedulable_nodes) > 1 else None
    if recovery:
        out["recovery"] = recovery
    return out


# --- tables ---------------------------------------------------------------------------------------

def _node_rows(cluster: Cluster) -> list[dict[str, str]]:
    rows = []
    for n in cluster.nodes:
        dqlite = "voter" if n in cluster.voters else "stand-by" if n in cluster.standbys else "–"
        disks = "<br>".join(f"{code(d.id)} ({d.size_gb} GB)" for d in n.disks) or "–"
        usb = "<br>".join(f"{md(u.name)} ({md(u.kind)}): {code(u.id)}" for u in n.usb_devices) or "–"
        rows.append({
            "hostname": md(n.hostname), "role": md(n.role.replace("-", " ")), "dqlite": dqlite,
            "schedulable": "yes" if n.schedulable else "no (NoSchedule)", "board": md(n.board),
            "memory": f"{n.memory_gib} GiB", "ip": md(n.ip) + (" (Wi-Fi)" if n.link == "wifi" else ""),
            "boot": "USB SSD" if n.boot_device == "usb" else "SD card", "disks": disks, "usb": usb,
        })
    return rows


def _satellite_rows(cluster: Cluster) -> list[dict[str, str]]:
    rows = []
    for s in cluster.satellites:
        serves = {z.device: z.name for z in cluster.zigbee if z.satellite == s.hostname}
        devices = "<br>".join(
            f"{md(d.name)}: {code(d.id)}, TCP {d.port}, {d.baud_rate} baud"
            + (f", Zigbee network {md(serves[d.name])}" if d.name in serves else "")
            for d in s.serial_devices)
        rows.append({"hostname": md(s.hostname), "board": md(s.board),
                     "memory": f"{s.memory_gib:g} GiB" if s.memory_gib is not None else "–",
                     "ip": md(s.ip) + (" (Wi-Fi)" if s.link == "wifi" else ""), "devices": devices})
    return rows


def _zigbee_rows(cluster: Cluster) -> list[dict[str, str]]:
    rows = []
    for z in cluster.zigbee:
        if z.node is not None:
            node = cluster.node(z.node)
            stick = next((u for u in node.usb_devices if u.name == z.device), None)
            where = f"USB stick on node {md(node.hostname)}" + (f": {code(stick.id)}" if stick else "")
            runs = f"pinned to {md(node.hostname)} (down while that node is)"
        elif z.satellite is not None:
            sat = cluster.satellite(z.satellite)
            dev = next((d for d in sat.serial_devices if d.name == z.device), None)
            where = f"satellite {md(sat.hostname)}" + (f", {code(f'tcp://{sat.ip}:{dev.port}')}" if dev else "")
            runs = "any schedulable node"
        else:
            where = f"network coordinator {code(f'tcp://{z.host}:{z.port}')}"
            runs = "any schedulable node"
        rows.append({"name": md(z.name), "adapter": md(z.adapter), "channel": str(z.channel),
                     "topic": code(z.base_topic), "coordinator": where, "runs": runs,
                     "instance": code(f"zigbee2mqtt-{z.name}")})
    return rows


def _app_rows(cluster: Cluster, components: list[Component]) -> list[dict[str, str]]:
    rows = []
    for comp in components:
        if comp.layer != "apps":
            continue
        addresses = app_addresses(cluster, comp)
        where = "<br>".join(f"<{a.url}>" + (f" ({md(a.what)})" if a.what else "") for a in addresses)
        rows.append({"name": md(comp.name), "namespace": code(comp.namespace), "what": md(comp.description) or "–",
                     "addresses": where or "inside the cluster only"})
    return rows


def _figures(cluster: Cluster, report: Mapping[str, Any]) -> dict[str, Any]:
    cp = report["control_plane"]
    power = report["power"]
    storage = report["storage"]
    return {
        "voters": ", ".join(md(v) for v in cp["voters"]),
        "standbys": ", ".join(md(v) for v in cp["stand_bys"]),
        "tolerated": cp["failures_in_a_row_tolerated"],
        "survives": report["verdict"]["survives_any_single_node_failure"],
        "fits": report["verdict"]["everything_fits"],
        "spofs": ", ".join(md(s) for s in report["single_points_of_failure"]),
        "ha_back": report["power_cut"]["home_assistant_back_seconds"],
        "power_cut_total": max((o["cumulative_seconds"] for o in report["power_cut"]["order"]), default=0),
        "idle_watts": power["idle_watts"], "load_watts": power["load_watts"], "kwh": power["kwh_per_year_idle"],
        "usable_gib": storage["usable_gib"], "requested_gib": storage["requested_gib"],
        "recoveries": [{"workload": md(r["workload"]), "seconds": r["seconds_until_running"],
                        "start": r["app_start_seconds"], "total": r["seconds_until_running"] + r["app_start_seconds"],
                        "defaults": r["defaults_seconds_until_running"]} for r in report["recovery"]
                       if len(cluster.schedulable_nodes) > 1],
        "one_home": len(cluster.schedulable_nodes) < 2,
        "failover": report["failover_settings"],
    }


def files(cluster: Cluster, components: list[Component]) -> list[OutputFile]:
    """README file(s) of `cluster`."""
    from ..analysis.report import report
    from ..analysis.resilience import analyse
    from ..config.secrets import required_keys
    from .certificates import lan_facts

    figures = report(analyse(cluster))
    context = {
        "title": md(cluster.name),
        "description": md(cluster.description),
        "domain": md(cluster.domain),
        "ingress_ip": md(cluster.ingress_ip),
        "nodes": _node_rows(cluster),
        "satellites": _satellite_rows(cluster),
        "zigbee": _zigbee_rows(cluster),
        "apps": _app_rows(cluster, components),
        "figures": _figures(cluster, figures),
        "diagrams": diagrams(cluster, components, figures),
        "engine": cluster.engine,
        "secrets_file": md(cluster.secrets_file),
        "secret_keys": [{"name": code(k.name), "what": md(k.description)} for k in required_keys(cluster)],
        "lan": lan_facts(cluster),  # names, certificates and logins on the LAN (areas/certificates.py)
    }
    return [OutputFile(PurePosixPath("README.md"), "core/docs/README.md.j2", freeze(context), "markdown")]
