"""Zero-touch reflash (issue 19): the after-join step, the reclaim of stale members, and a failed
node setup that fails the boot.

No MicroK8s can run here (no snapd, no Pi), so `microk8s`, `snap` and `openssl s_client` are
recording fakes on a tmp PATH that model the real tools:
* `microk8s join` does what upstream join.py does to the joining node: it replaces the kubelet
  args file with the contacted peer's (`store_base_kubelet_args`), puts the joining node's
  address in `--node-ip` (`update_kubelet_node_ip`), restarts the kubelet, which registers the
  Node with the taints of the args file at that moment, and exits 0 with "Successfully joined the
  cluster." even when dqlite never listed the node (`update_dqlite` gives up after its waits).
* `microk8s status` prints the "datastore master/standby nodes:" lines of status.py.
* `microk8s remove-node NAME|IP --force` removes the node's dqlite entry and Node object and, as
  remove_node.py does for a node without a Node object, exits 1 even after removing the entry.
* `openssl s_client | openssl x509` answer with the CA each address's cluster agent presents.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FAKE_OPENSSL, need_programs
from hkgen.areas import rejoin, seeds
from hkgen.config.load import load_file
from hkgen.config.model import Cluster
from hkgen.validation.validate import validate_document

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "templates" / "cloud-init" / "files"
TOKEN = "0123456789abcdefghijklmnopqrstuv"  # noqa: S105 - test value

FAKE_MICROK8S = r'''#!@PYTHON@
"""Fake microk8s: join (join.py's effect on the joining node), status, kubectl node, remove-node."""
import json, os, sys

world = json.load(open(os.environ["FAKE_WORLD"]))
me = os.environ["FAKE_HOST"]
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(f"{me}: microk8s {' '.join(args)}\n")

def save():
    json.dump(world, open(os.environ["FAKE_WORLD"], "w"))

def register(name, args_file):
    """The kubelet registers the Node with the taints its arguments give it (first registration only)."""
    if name in world["nodes"]:
        return
    taints = []
    for line in open(args_file).read().splitlines():
        if line.startswith("--register-with-taints="):
            taints = [t.split(":")[0].split("=")[0] for t in line.split("=", 1)[1].split(",")]
    world["nodes"][name] = {"ready": "True", "taints": taints}

cmd = args[0] if args else ""
if cmd == "join":
    peer = args[1].split(":")[0]
    ip = world["ips"][me]
    if "--worker" not in args and any(v.startswith(ip + ":") for v in world["voters"]):
        # The cluster agent refuses (HTTP 500) and join.py prints its message and exits 1.
        print(f"failed to retrieve dqlite cluster nodes: the joining node ({ip}) is already known to dqlite (500).")
        sys.exit(1)
    peer_args = world["peer_args"][peer]
    args_file = os.environ["FAKE_KUBELET_ARGS"]
    text = peer_args  # store_base_kubelet_args: the peer's file, whole
    ip = world["ips"][me]
    if "--node-ip" in text:  # update_kubelet_node_ip
        text = "\n".join(f"--node-ip={ip}" if l.startswith("--node-ip") else l for l in text.splitlines()) + "\n"
    if "--worker" in args:  # update_cert_auth_kubelet: the worker's node labels
        text = "\n".join(l for l in text.splitlines() if not l.startswith("--node-labels")) + \
            "\n--node-labels=microk8s.io/cluster=true,node.kubernetes.io/microk8s-worker=microk8s-worker\n"
    open(args_file, "w").write(text)
    register(me, args_file)  # join restarts the kubelet
    if "--worker" in args:
        open(os.environ["FAKE_CLUSTERED_LOCK"], "w").write("")
    elif world.get("dqlite_gives_up"):
        print("Waiting for this node to finish joining the cluster. .. .. .. .. .. .. .. .. .. .. ")
    else:
        world["voters"].append(f"{ip}:19001")
    save()
    print("Successfully joined the cluster.")
    sys.exit(0)
if cmd == "leave":  # leave.py: the node's dqlite entry is deleted through a member, own CA back
    ip = world["ips"][me]
    world["voters"] = [v for v in world["voters"] if not v.startswith(ip + ":")]
    save()
    sys.exit(0)
if cmd == "status":
    print("microk8s is running")
    print("high-availability: yes")
    print("  datastore master nodes: " + (" ".join(world["voters"]) or "none"))
    print("  datastore standby nodes: " + (" ".join(world.get("standby", [])) or "none"))
    sys.exit(0)
if cmd == "remove-node":
    target = args[1]
    name = next((n for n, ip in world["ips"].items() if ip == target), target)
    ip = world["ips"].get(name, target)
    world["voters"] = [v for v in world["voters"] if not v.startswith(ip + ":")]
    had = world["nodes"].pop(name, None) is not None
    save()
    sys.exit(0 if had else 1)
if cmd == "kubectl":
    k = args[1:]
    if k[:2] == ["get", "--raw"]:
        sys.exit(0 if world.get("api", True) else 1)
    if k[0] == "get" and k[1] == "node":
        node = world["nodes"].get(k[2])
        if node is None:
            print(f'Error from server (NotFound): nodes "{k[2]}" not found', file=sys.stderr)
            sys.exit(1)
        if any("Ready" in a for a in k):
            print(node["ready"], end="")
        sys.exit(0)
    if k[0] == "taint" and k[1] == "node":
        node = world["nodes"][k[2]]
        spec = k[3]
        key = spec.split("=")[0].split(":")[0].rstrip("-")
        if spec.endswith("-"):
            if key not in node["taints"]:
                print(f"error: taint {key!r} not found", file=sys.stderr)
                sys.exit(1)
            node["taints"].remove(key)
        elif key not in node["taints"]:
            node["taints"].append(key)
        save()
        sys.exit(0)
print(f"fake microk8s: unsupported {args}", file=sys.stderr)
sys.exit(2)
'''
FAKE_SNAP = """#!/bin/bash
echo "$FAKE_HOST: snap $*" >>"$FAKE_LOG"
case $1 in
  list) exit 0 ;;
  services) echo "microk8s.daemon-kubelite  enabled  active  -" ;;
esac
exit 0
"""
TAINT = "node-role.kubernetes.io/control-plane"


def _reference() -> Cluster:
    result = validate_document(load_file(REPO / "clusters" / "home" / "cluster.yaml"))
    assert result.cluster is not None
    return result.cluster


class World:
    def __init__(self, tmp_path: Path, **state: object) -> None:
        self.root = tmp_path
        self.cluster = _reference()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, body in (("microk8s", FAKE_MICROK8S.replace("@PYTHON@", sys.executable)), ("snap", FAKE_SNAP),
                           ("openssl", FAKE_OPENSSL)):
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)
        self.ips = {n.hostname: n.ip for n in self.cluster.nodes}
        # Each peer's kubelet args file as MicroK8s keeps it: its own launch-config arguments.
        peer_args = {n.ip: "\n".join(["--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
                                      *rejoin.kubelet_arg_lines(seeds.base_launch_config(self.cluster, n))]) + "\n"
                     for n in self.cluster.nodes}
        self.world = tmp_path / "world.json"
        self.world.write_text(json.dumps({"ips": self.ips, "peer_args": peer_args, "nodes": {}, "voters": [],
                                          **state}))
        self.log = tmp_path / "calls"
        self.log.write_text("")
        self.cas = tmp_path / "cas"

    def state(self) -> dict[str, object]:
        return dict(json.loads(self.world.read_text()))

    def env(self, host: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_WORLD": str(self.world), "FAKE_LOG": str(self.log),
                "FAKE_HOST": host, "FAKE_KUBELET_ARGS": str(self.root / host / "args-kubelet"),
                "FAKE_CLUSTERED_LOCK": str(self.root / host / "clustered.lock"), "FAKE_CAS": str(self.cas)}

    def join(self, host: str, peers: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        node = self.cluster.node(host)
        base = self.root / host
        (base / "launcher").mkdir(parents=True)
        (base / "token").write_text(TOKEN + "\n")
        own = rejoin.kubelet_arg_lines(seeds.base_launch_config(self.cluster, node))
        (base / "own-args").write_text("".join(f"{a}\n" for a in own))
        role = "worker" if not node.is_control_plane else "control-plane"
        after_join = self.root / "hkgen-microk8s-after-join"  # installed 0755 on the Pi
        if not after_join.exists():
            after_join.write_text((FILES / "hkgen-microk8s-after-join.sh").read_text())
            after_join.chmod(0o755)
        settings = rejoin.join_settings(self.cluster, node) | {
            "after_join": str(after_join), "kubelet_args": str(base / "args-kubelet"),
            "own_args": str(base / "own-args"), "clustered_lock": str(base / "clustered.lock"),
        }
        conf = {
            "role": role, "peers": " ".join(self.ips[p] for p in peers), "channel": "1.34/stable",
            "token_file": str(base / "token"), "launcher_dir": str(base / "launcher"), "addons_config": "",
            "token_config": "", "state_file": str(base / "joined"), "join_lock": str(base / "lock"),
            "form_anyway": "", "microk8s": str(self.bin / "microk8s"), "snap": str(self.bin / "snap"),
            "openssl": str(self.bin / "openssl"), "agent_port": "25000", **settings,
            "ready_timeout": "2", "ready_poll": "1", **extra,
        }
        (base / "join.conf").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items()))
        return subprocess.run(["bash", str(FILES / "hkgen-microk8s-join.sh"), str(base / "join.conf")],
                              env=self.env(host), capture_output=True, text=True, timeout=60)

    def args_file(self, host: str) -> list[str]:
        return (self.root / host / "args-kubelet").read_text().splitlines()


def test_the_fake_join_overwrites_the_args_as_upstream_does(tmp_path: Path) -> None:
    """Without hkgen's after-join step: cp1 (schedulable) joins through cp2 (NoSchedule) and
    registers tainted with cp2's arguments. This is the upstream behaviour the step undoes."""
    world = World(tmp_path)
    done = world.join("cp1", ["cp2"], after_join="")
    assert done.returncode == 0, done.stdout
    assert any(a.startswith("--register-with-taints=") for a in world.args_file("cp1"))
    assert world.state()["nodes"]["cp1"]["taints"] == [TAINT]  # type: ignore[index]


def test_schedulable_control_plane_joining_a_tainted_peer_keeps_its_own_args(tmp_path: Path) -> None:
    world = World(tmp_path)
    done = world.join("cp1", ["cp2"])
    assert done.returncode == 0, done.stdout + done.stderr
    args = world.args_file("cp1")
    assert not any(a.startswith("--register-with-taints") for a in args)
    assert f"--node-ip={world.ips['cp1']}" in args and "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config" in args
    assert world.state()["nodes"]["cp1"]["taints"] == []  # type: ignore[index]
    assert "cp1: snap restart microk8s.daemon-kubelite" in world.log.read_text()
    assert "joined the cluster through" in (tmp_path / "cp1" / "joined").read_text()


def test_non_schedulable_control_plane_joining_an_untainted_peer_gets_its_taint(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert world.join("cp1", ["cp2"]).returncode == 0  # cp1: schedulable, no taint
    done = world.join("cp2", ["cp1"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"--register-with-taints={TAINT}:NoSchedule" in world.args_file("cp2")
    assert world.state()["nodes"]["cp2"]["taints"] == [TAINT]  # type: ignore[index]


def test_worker_joining_a_tainted_control_plane_keeps_its_own_args(tmp_path: Path) -> None:
    world = World(tmp_path)
    done = world.join("w1", ["cp2"])
    assert done.returncode == 0, done.stdout + done.stderr
    args = world.args_file("w1")
    assert not any(a.startswith("--register-with-taints") for a in args)
    # join's worker labels stay (MicroK8s' own); node roles come from the labeller.
    assert any(a.startswith("--node-labels=microk8s.io/cluster=true") for a in args)
    # The Node registered inside join, tainted; a worker has no admin credentials, so the node
    # labeller removes it (tests/test_platform.py: untaint covers workers).
    assert world.state()["nodes"]["w1"]["taints"] == [TAINT]  # type: ignore[index]
    assert " kubectl taint" not in world.log.read_text()


def test_join_that_exits_0_but_never_reaches_dqlite_is_not_success(tmp_path: Path) -> None:
    world = World(tmp_path, dqlite_gives_up=True)
    done = world.join("cp3", ["cp1"])
    assert done.returncode == 75, done.stdout
    assert "join exited 0 but this node did not become a member" in done.stdout
    assert "not a member (Node Ready and, for a control plane, a dqlite voter or stand-by)" in done.stdout
    assert not (tmp_path / "cp3" / "joined").exists()
    assert "cp3: microk8s leave" in world.log.read_text()  # back to standalone for a clean retry


# --- reclaim --------------------------------------------------------------------------------------

def _reclaim(world: World, host: str, cas: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cluster = world.cluster
    world.cas.write_text("".join(f"{world.ips[h]} {ca}\n" for h, ca in cas.items()))
    base = world.root / f"reclaim-{host}"
    base.mkdir()
    (base / "joined").write_text("")
    (base / "members").write_text("".join(
        f"{n.hostname} {n.ip} {'control-plane' if n.is_control_plane else 'worker'}\n" for n in cluster.nodes))
    conf = {"members_file": str(base / "members"), "microk8s": str(world.bin / "microk8s"),
            "openssl": str(world.bin / "openssl"), "joined_file": str(base / "joined"), "agent_port": "25000",
            "self_ip": world.ips[host]}
    (base / "reclaim.conf").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items()))
    return subprocess.run(["bash", str(FILES / "hkgen-microk8s-reclaim.sh"), str(base / "reclaim.conf")],
                          env=world.env(host), capture_output=True, text=True, timeout=60)


def _running(tmp_path: Path, cp1_ready: str = "False") -> World:
    ips = {}
    world = World(tmp_path)
    ips = world.ips
    state = world.state()
    state["voters"] = [f"{ips[h]}:19001" for h in ("cp1", "cp2", "cp3")]
    state["nodes"] = {"cp1": {"ready": cp1_ready, "taints": []}, "cp2": {"ready": "True", "taints": [TAINT]},
                      "cp3": {"ready": "True", "taints": [TAINT]}, "w1": {"ready": "True", "taints": []}}
    world.world.write_text(json.dumps(state))
    return world


def test_reflashed_cp1_is_removed_by_a_live_control_plane_and_rejoins(tmp_path: Path) -> None:
    world = _running(tmp_path)
    # The reflashed cp1 first finds its old self still a dqlite member: refused, it waits.
    early = world.join("cp1", ["cp2"])
    assert early.returncode == 75
    assert "remove the stale entry by themselves within minutes (hkgen-microk8s-reclaim)" in early.stdout
    assert "remove-node" not in early.stdout  # nobody is asked to type it
    done = _reclaim(world, "cp2", {"cp1": "FRESH", "cp2": "CLUSTER", "cp3": "CLUSTER", "w1": "CLUSTER"})
    assert done.returncode == 0
    assert "cp2: microk8s remove-node cp1 --force" in world.log.read_text()
    assert "removed the stale membership of cp1" in done.stdout
    state = world.state()
    assert "cp1" not in state["nodes"] and len(state["voters"]) == 2  # type: ignore[operator, arg-type]
    # Now cp1's join goes through, and its own arguments survive the join through cp2.
    import shutil

    shutil.rmtree(tmp_path / "cp1")  # the join service's next attempt (same seed)
    joined = world.join("cp1", ["cp2"])
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert world.state()["nodes"]["cp1"]["taints"] == []  # type: ignore[index]


@pytest.mark.parametrize(("why", "ready", "cas"), [
    ("a sick member still carries the cluster CA", "False", {"cp1": "CLUSTER", "cp2": "CLUSTER"}),
    ("a powered-off node does not answer", "False", {"cp2": "CLUSTER"}),
    ("a Ready node is never touched", "True", {"cp1": "FRESH", "cp2": "CLUSTER"}),
])
def test_members_that_were_not_reflashed_are_never_removed(tmp_path: Path, why: str, ready: str,
                                                           cas: dict[str, str]) -> None:
    world = _running(tmp_path, cp1_ready=ready)
    done = _reclaim(world, "cp2", cas)
    assert done.returncode == 0, why
    assert "remove-node" not in world.log.read_text(), why
    assert len(world.state()["voters"]) == 3, why  # type: ignore[arg-type]


def test_a_voter_is_not_removed_when_the_rest_would_lose_the_majority(tmp_path: Path) -> None:
    world = _running(tmp_path)
    state = world.state()
    state["voters"] = state["voters"][:2]  # type: ignore[index]
    world.world.write_text(json.dumps(state))
    done = _reclaim(world, "cp2", {"cp1": "FRESH", "cp2": "CLUSTER"})
    assert "remove-node" not in world.log.read_text()
    assert "would leave 1 of 2: not removed" in done.stdout


def test_reflashed_worker_loses_its_stale_node(tmp_path: Path) -> None:
    world = _running(tmp_path, cp1_ready="True")
    state = world.state()
    state["nodes"]["w1"] = {"ready": "Unknown", "taints": [TAINT]}  # type: ignore[index]
    world.world.write_text(json.dumps(state))
    done = _reclaim(world, "cp3", {"w1": "FRESH", "cp3": "CLUSTER"})
    assert "cp3: microk8s remove-node w1 --force" in world.log.read_text(), done.stdout
    assert "w1" not in world.state()["nodes"]  # type: ignore[operator]


# --- a failed node setup fails the boot -----------------------------------------------------------

def _runcmd_script(user_data: str, replace: dict[str, str]) -> str:
    """runcmd as cloud-init runs it: one shell line per item, list items quoted (cloud-init's
    shellify), in a #!/bin/sh script whose exit status is the module's."""
    items = yaml.safe_load(user_data)["runcmd"]
    lines = [shlex.join(i) if isinstance(i, list) else i for i in items]
    text = "#!/bin/sh\n" + "\n".join(lines) + "\n"
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("host", ["cp1", "w1"])
def test_failed_node_setup_fails_the_runcmd_module(tmp_path: Path, host: str) -> None:
    user_data = (REPO / "clusters" / "home" / "nodes" / host / "user-data").read_text()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "systemctl").chmod(0o755)
    marker = tmp_path / "run" / "node-setup-failed"
    for outcome, code in (("fails", 1), ("succeeds", 0)):
        setup = tmp_path / f"setup-{outcome}"
        # What hkgen-node-setup does on failure: it leaves the marker and exits 1.
        setup.write_text(f"#!/bin/sh\nmkdir -p {marker.parent}\nrm -f {marker}\n"
                         + (f"touch {marker}\nexit 1\n" if code else "exit 0\n"))
        setup.chmod(0o755)
        script = tmp_path / f"runcmd-{outcome}"
        script.write_text(_runcmd_script(user_data, {"/usr/local/sbin/hkgen-node-setup": str(setup),
                                                     "/run/hkgen/node-setup-failed": str(marker)}))
        done = subprocess.run(["sh", str(script)], env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
                              capture_output=True, text=True, timeout=30)
        assert (done.returncode != 0) == bool(code), (outcome, done.stdout, done.stderr)
    setup_text = next(f["content"] for f in yaml.safe_load(user_data)["write_files"]
                      if f["path"] == "/usr/local/sbin/hkgen-node-setup")
    assert 'touch "$failed_marker"' in setup_text and ">/dev/console" in setup_text


def test_new_scripts_pass_shellcheck() -> None:
    names = ["hkgen-microk8s-after-join.sh", "hkgen-microk8s-reclaim.sh", "hkgen-microk8s-join.sh"]
    done = subprocess.run(["shellcheck", "-S", "style", *(str(FILES / n) for n in names)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_new_units_pass_systemd_analyze(tmp_path: Path) -> None:
    import re

    need_programs("systemd-analyze")
    units = []
    for name in ("hkgen-gitops-bootstrap.service", "hkgen-gitops-bootstrap.timer",
                 "hkgen-microk8s-reclaim.service", "hkgen-microk8s-reclaim.timer"):
        text = (FILES / f"{name}.j2").read_text()
        # The scripts live on the Pi; here any executable stands in for them.
        (tmp_path / name).write_text(re.sub(r"/usr/local/sbin/hkgen-[a-z0-9-]+", "/bin/true", text))
        units.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
