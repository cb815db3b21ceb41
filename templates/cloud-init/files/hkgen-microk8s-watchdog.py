#!/usr/bin/python3
"""hkgen-microk8s-watchdog: restart a wedged MicroK8s control plane, a bounded number of times.

Written by hkgen; run every minute by a systemd timer on each control plane. MicroK8s HA has
open reports of the control plane stalling after a peer lost power abruptly (canonical/microk8s
#5386, #5352, #4596): the API server stops answering, or the node-lifecycle controller stops
marking dead nodes NotReady (so their pods are never moved), until kubelite is restarted.

The check restarts the local MicroK8s services when
  * the local API server failed `api_failures` checks in a row (GET /readyz), or
  * a node still shows Ready=True although its kubelet lease is older than
    `stale_lease_seconds` (the lifecycle controller is stuck), and this node holds the
    kube-controller-manager leader lease, or that lease itself is older than
    `leader_stale_seconds` (then the leader is gone and nobody took over),
never during the first `boot_grace_seconds` after boot and never more than
`max_restarts_per_hour` times in any hour: past the cap it only logs, so a node that is broken
for another reason is not restarted in a loop. A second restart within
`escalate_within_seconds` of the last one restarts k8s-dqlite as well as kubelite.
State lives in `state_file`. Standard library only (python3 >= 3.10).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

DEFAULT_CONFIG = "/etc/hkgen/microk8s-watchdog.json"
HOUR = 3600


def parse_time(text):
    """RFC 3339 time from the API (e.g. 2026-11-25T09:00:00.123456Z) -> POSIX seconds."""
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python 3.10's fromisoformat takes 3 or 6 fraction digits only
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    return datetime.datetime.fromisoformat(text).timestamp()


def observe_nodes(nodes, leases, now):
    """Names of nodes that are Ready=True while their kubelet lease is stale: {name: lease age}."""
    renewed = {}
    for lease in leases.get("items", []):
        renewed[lease["metadata"]["name"]] = parse_time((lease.get("spec") or {}).get("renewTime"))
    ages = {}
    for node in nodes.get("items", []):
        name = node["metadata"]["name"]
        ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
        if not ready or ready[0].get("status") != "True":
            continue
        when = renewed.get(name)
        if when is not None:
            ages[name] = now - when
    return ages


def decide(cfg, state, obs, now):
    """Pure decision: (services to restart, reason, new state). `obs` holds what was observed:
    uptime, api_ok, lease_ages {node: seconds}, leader (node name or None), leader_age."""
    state = {"api_failures": int(state.get("api_failures", 0)),
             "restarts": [t for t in state.get("restarts", []) if now - t < HOUR]}
    if obs["uptime"] < cfg["boot_grace_seconds"]:
        return [], "booting", state
    state["api_failures"] = 0 if obs["api_ok"] else state["api_failures"] + 1
    reason = ""
    api_down = not obs["api_ok"] and state["api_failures"] >= cfg["api_failures"]
    if api_down:
        reason = f"the local API server failed {state['api_failures']} checks in a row"
    elif obs["api_ok"]:
        stale = {n: age for n, age in obs.get("lease_ages", {}).items() if age > cfg["stale_lease_seconds"]}
        leader_gone = obs.get("leader_age") is not None and obs["leader_age"] > cfg["leader_stale_seconds"]
        if stale and (obs.get("leader") == cfg["node"] or leader_gone):
            shown = ", ".join(f"{n} ({int(age)} s)" for n, age in sorted(stale.items()))
            reason = f"node lifecycle stalled: still Ready with stale leases: {shown}"
    if not reason:
        return [], "healthy" if obs["api_ok"] else "API server not answering", state
    if len(state["restarts"]) >= cfg["max_restarts_per_hour"]:
        return [], f"{reason}; NOT restarting: {len(state['restarts'])} restarts in the last hour (cap)", state
    services = ["microk8s.daemon-kubelite"]
    if api_down and state["restarts"] and now - state["restarts"][-1] < cfg["escalate_within_seconds"]:
        services = ["microk8s.daemon-k8s-dqlite", "microk8s.daemon-kubelite"]
    state["restarts"].append(now)
    state["api_failures"] = 0
    return services, reason, state


def _run(argv, timeout=30):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _json(argv):
    done = _run(argv)
    if done is None or done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None


def observe(cfg, now):
    """Look at the cluster through the local API server."""
    with open("/proc/uptime", encoding="ascii") as fh:
        uptime = float(fh.read().split()[0])
    kubectl = [cfg["microk8s"], "kubectl"]
    ready = _run([*kubectl, "get", "--raw", "/readyz"], timeout=20)
    obs = {"uptime": uptime, "api_ok": ready is not None and ready.returncode == 0,
           "lease_ages": {}, "leader": None, "leader_age": None}
    if not obs["api_ok"]:
        return obs
    nodes = _json([*kubectl, "get", "nodes", "-o", "json"])
    leases = _json([*kubectl, "get", "leases", "-n", "kube-node-lease", "-o", "json"])
    if nodes is not None and leases is not None:
        obs["lease_ages"] = observe_nodes(nodes, leases, now)
    leader = _json([*kubectl, "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "json"])
    if leader is not None:
        spec = leader.get("spec") or {}
        obs["leader"] = (spec.get("holderIdentity") or "").split("_")[0] or None
        renewed = parse_time(spec.get("renewTime"))
        obs["leader_age"] = None if renewed is None else now - renewed
    return obs


def main(argv=None):
    parser = argparse.ArgumentParser(description="restart a wedged MicroK8s control plane (bounded)")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        cfg = json.load(fh)
    if not os.path.exists(cfg["joined_file"]):
        return 0
    try:
        with open(cfg["state_file"], encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        state = {}
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    services, reason, state = decide(cfg, state, observe(cfg, now), now)
    status = 0
    if services:
        print(f"hkgen-microk8s-watchdog: {reason}: restarting {' and '.join(services)}")
        for service in services:
            done = _run([cfg["snap"], "restart", service], timeout=240)
            if done is None or done.returncode != 0:
                print(f"hkgen-microk8s-watchdog: restarting {service} failed")
                status = 1
    elif reason not in ("healthy", "booting"):
        print(f"hkgen-microk8s-watchdog: {reason}")
    os.makedirs(os.path.dirname(cfg["state_file"]), exist_ok=True)
    tmp = cfg["state_file"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    os.replace(tmp, cfg["state_file"])
    return status


if __name__ == "__main__":
    sys.exit(main())
