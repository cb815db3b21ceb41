"""ser2net on a satellite restarts on failure: a systemd drop-in over the distribution's unit
(Debian's has Restart=no), checked by the real systemd-analyze.

The base unit here is a stand-in for Debian's ser2net.service (same name, a long-running
ExecStart that exists on this machine): systemd-analyze only needs the unit to merge the drop-in.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import tools
from hkgen.areas.seeds import SER2NET_DROP_IN
from test_seeds import render_seeds, user_data, variant, written

BASE_UNIT = ("[Unit]\nDescription=ser2net\n[Service]\nExecStart=/bin/sleep infinity\n"
             "[Install]\nWantedBy=multi-user.target\n")


def _analyze(units: Path) -> str:
    done = subprocess.run(["systemd-analyze", "verify", str(units / "ser2net.service")], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    assert done.returncode == 0, done.stderr
    return done.stderr


@tools("systemd-analyze")
def test_satellite_ser2net_restarts_on_failure(tmp_path: Path) -> None:
    _plan, tree = render_seeds(variant(tmp_path))
    ud = user_data(tree, "zsat-garden")
    drop_in = written(ud, SER2NET_DROP_IN)
    assert "\nRestart=on-failure\n" in drop_in and "\nStartLimitIntervalSec=0\n" in drop_in
    # The drop-in is in place (and loaded) before the setup script restarts ser2net.
    assert ud["runcmd"][:2] == [["systemctl", "daemon-reload"], ["/usr/local/sbin/hkgen-node-setup"]]
    units = tmp_path / "units"
    (units / "ser2net.service.d").mkdir(parents=True)
    (units / "ser2net.service").write_text(BASE_UNIT)
    (units / "ser2net.service.d" / Path(SER2NET_DROP_IN).name).write_text(drop_in)
    assert _analyze(units) == ""
    # The check can fail: a misspelt key in a drop-in is reported.
    (units / "ser2net.service.d" / "20-typo.conf").write_text("[Service]\nRestrt=on-failure\n")
    assert "Unknown key 'Restrt'" in _analyze(units)
