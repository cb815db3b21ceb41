"""The kubelet lease cadence and the controller's grace period the plan assumes are what the seeds
render, and the plan reads them back from there (issue 20: failover tuning that holds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hkgen.analysis.resilience import analyse, rendered_settings
from test_seeds import CONTROL_PLANES, WORKERS, render_seeds, user_data, variant


def _launch(tree: dict[Any, bytes], host: str) -> dict[str, Any]:
    files = {f["path"]: f["content"] for f in user_data(tree, host)["write_files"]}
    loaded: dict[str, Any] = yaml.safe_load(files["/etc/microk8s.yaml"])
    return loaded


def test_kubelet_renews_its_lease_four_times_per_grace_period(tmp_path: Path) -> None:
    cluster = variant(tmp_path)
    _plan, tree = render_seeds(cluster)
    for host in (*CONTROL_PLANES, *WORKERS):
        kubelet = _launch(tree, host)["extraKubeletArgs"]
        # reference grace 30 s: lease duration 30 s -> the kubelet renews every 30 x 0.25 = 7.5 s
        assert kubelet["--node-lease-duration-seconds"] == "30", host
        assert kubelet["--node-status-update-frequency"] == "7.5s", host
        # set explicitly, or the kubelet would post its full status every 7.5 s too
        assert kubelet["--node-status-report-frequency"] == "5m", host
    for host in CONTROL_PLANES:
        controller = _launch(tree, host)["extraKubeControllerManagerArgs"]
        assert controller == {"--node-monitor-grace-period": "30s", "--node-monitor-period": "5s"}
        assert _launch(tree, host)["extraKubeAPIServerArgs"]["--default-unreachable-toleration-seconds"] == "10"
    for host in WORKERS:
        assert "extraKubeControllerManagerArgs" not in _launch(tree, host)


def test_the_plan_reads_the_cadence_from_the_seeds(tmp_path: Path) -> None:
    def edit(data: Any) -> None:
        data["microk8s"]["failover"]["nodeMonitorGracePeriodSeconds"] = 40

    cluster = variant(tmp_path, edit)
    _plan, tree = render_seeds(cluster)
    settings = rendered_settings(tree)
    assert (settings["node_monitor_grace"], settings["node_monitor_period"], settings["lease_duration"]) == (40, 5, 40)
    ha = {r.workload: r for r in analyse(cluster, settings).recoveries}["home-assistant"]
    # 40 grace + 5 period = 45 s until NotReady, read from the rendered seeds
    assert ha.steps[0] == ("node marked NotReady (grace 40 s + monitor period 5 s)", 45)
