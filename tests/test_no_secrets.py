"""No secret value reaches any file that goes to Git: rendered tree, cluster.yaml, the encrypted
secrets file; searched plain, base64 and URL-encoded (issue 10 item 3)."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

from conftest import secret_in

KNOWN = {
    "JOIN_TOKEN": "k7q2m9x4v1c8z5n3b6w0r2t8y4u1i7o9",
    "S3_ACCESS_KEY_ID": "AKIAHKGENTESTKEY0042",
    "S3_SECRET_ACCESS_KEY": "s3-secret/with+special=chars&more",
    "MQTT_PASSWORD_HOMEASSISTANT": "mqtt-pass-ha-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-pass-98765",
    "WIFI_PASSPHRASE_HOME_IOT": "wifi passphrase with spaces",
    "ZIGBEE_HOUSE_NETWORK_KEY": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "ZIGBEE2MQTT_FRONTEND_TOKEN": "z2m-frontend-token-4711",
    # Fixed, so the search does not depend on chance (see conftest.secret_in).
    "ZIGBEE_HOUSE_PAN_ID": "1c3e",
    "ZIGBEE_GARDEN_PAN_ID": "2a5d",
    "ZIGBEE_ATTIC_PAN_ID": "3b7f",
}


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
    ]


def test_rendered_tree_holds_no_secret_value(home_copy: Path, secrets_for, hkgen) -> None:
    _key, values = secrets_for(home_copy, KNOWN)
    run = hkgen("render", str(home_copy))
    assert run.returncode == 0, run.stdout + run.stderr
    files = [p for p in home_copy.rglob("*") if p.is_file()]
    assert len(files) > 3
    hits = []
    for path in files:
        data = path.read_bytes().decode("utf-8", "replace")
        for name, value in values.items():
            for form in _forms(value):
                if secret_in(form, data):
                    hits.append(
                        f"{path.relative_to(home_copy)} contains {name} ({'plain' if form == value else 'encoded'})"
                    )
    assert hits == []
    for name, value in values.items():
        for form in _forms(value):
            assert not secret_in(form, run.stdout + run.stderr), name


def test_short_values_are_searched_as_whole_words() -> None:
    # A PAN id inside a checksum is chance, not a leak; as a value of its own it is a leak.
    assert not secret_in("3500", "checksum: 9221fac1b435009c3b0c")
    assert secret_in("3500", "panId: 3500\n") and secret_in("3500", '"3500"')
    assert secret_in("a-long-secret", "xa-long-secretx")
