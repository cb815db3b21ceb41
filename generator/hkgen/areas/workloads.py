"""Catalogue and custom apps as GitOps components (layer `apps`), generically from the app folders.

Each enabled catalogue app becomes one `Component`: its `files:` rendered from its templates (a
file with `each: zigbee` once per Zigbee network), its `releases:` with values rendered from their
templates now, and a kustomization.yaml listing the files. Each `customApps` entry becomes a
component from the shared `apps/_custom/` templates. No app has Python of its own here: what
differs between apps lives in their folders; this module only supplies the cluster facts the
templates read (images with pinned tags, workloads with their requests, the Zigbee networks,
secret placeholders, the S3 target).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, cast

from ..config.catalogue import CUSTOM_NAMESPACE, AppSpec, Workload, app_workloads, holds, load_catalogue, resolve
from ..config.model import Cluster, CustomApp, ZigbeeNetwork
from ..config.mqtt import mqtt_policy
from ..config.secrets import key_for, placeholder, required_keys
from ..config.tls import tls_context
from ..core.errors import ConfigError, Problem, RenderError
from .parts import Chart, Component, Format, OutputFile, Release, freeze

__all__ = ["APP_DISTRO", "CUSTOM_NAMESPACE", "app_distro", "app_template_text", "components"]

# What app manifests need to know about the distribution beyond the platform's facts
# (`platform.distro`): MicroK8s runs the scheduler, controller manager and kube-proxy inside one
# kubelite process per node (no pods to scrape) on dqlite instead of etcd, with the kubelet's
# default cluster domain. Move these into platform.DISTRO when a second distribution arrives.
APP_DISTRO: Mapping[str, Any] = freeze({
    "etcd": False,
    "controlPlanePods": False,
    "clusterDomain": "cluster.local",
})
# Websockets (Home Assistant, zigbee2mqtt, Grafana live) outlive ingress-nginx's 60 s proxy timeouts.
_NGINX_LONG_LIVED = {
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
}
CUSTOM_PRIORITY = "home"


def app_distro(cluster: Cluster) -> Mapping[str, Any]:
    """The distribution facts app templates read.

    The platform's facts, the apps' own (`APP_DISTRO`), and the ingress annotations that keep
    long-lived connections open with this cluster's ingress controller.
    """
    from .platform import distro

    facts = distro(cluster)
    selector = facts["ingressController"]["selector"]
    nginx = "nginx-ingress-microk8s" in selector.values()
    long_lived = _NGINX_LONG_LIVED if nginx else {}
    # HTTPS only, and the admin login for UIs without one of their own (an htpasswd Secret).
    # Traefik (MicroK8s 1.35+) needs Middleware objects for a login: those UIs are not exposed there.
    https = {"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"} if nginx else {}
    login = {"nginx.ingress.kubernetes.io/auth-type": "basic",
             "nginx.ingress.kubernetes.io/auth-secret": tls_context(cluster)["loginSecret"],
             "nginx.ingress.kubernetes.io/auth-realm": f"{cluster.name} cluster"} if nginx else None
    merged: Mapping[str, Any] = freeze({**facts, **APP_DISTRO, "longLivedAnnotations": long_lived,
                                        "httpsAnnotations": https, "loginAnnotations": login})
    return merged


def _images(spec: AppSpec, cluster: Cluster) -> dict[str, str]:
    return {key: f"{repo}:{cluster.version('images', key)}" for key, repo in spec.images}


def _s3(cluster: Cluster) -> dict[str, Any] | None:
    """The S3 target as the apps' object-store configs want it (credentials only as placeholders)."""
    bk = cluster.backup
    if bk is None:
        return None
    scheme, _, rest = bk.endpoint.partition("://")
    host = rest.split("/", 1)[0]
    return {
        "endpoint": bk.endpoint, "host": host, "insecure": scheme == "http", "bucket": bk.bucket,
        "region": bk.region, "prefix": bk.prefix, "backup_cron": bk.backup_cron, "backup_retain": bk.backup_retain,
        "access_key": placeholder("S3_ACCESS_KEY_ID"), "secret_key": placeholder("S3_SECRET_ACCESS_KEY"),
    }


def _zigbee_item(cluster: Cluster, net: ZigbeeNetwork, host: str | None) -> dict[str, Any]:
    """One Zigbee network as its zigbee2mqtt instance sees it: where the coordinator is."""
    usb = None
    if net.node is not None:
        node = cluster.node(net.node)
        device = next(d for d in node.usb_devices if d.name == net.device)
        port = f"/dev/serial/by-id/{device.id}"
        usb = {"node": node.hostname, "path": port, "node_schedulable": node.schedulable}
        where = f"USB stick {device.id} on node {node.hostname}"
    elif net.satellite is not None:
        sat = cluster.satellite(net.satellite)
        serial = next(d for d in sat.serial_devices if d.name == net.device)
        port = f"tcp://{sat.ip}:{serial.port}"
        where = f"ser2net on satellite {sat.hostname} ({serial.id})"
    else:
        port = f"tcp://{net.host}:{net.port}"
        where = f"network coordinator {net.host}:{net.port}"
    return {
        "name": net.name, "base_topic": net.base_topic, "channel": net.channel, "adapter": net.adapter,
        "serial_port": port, "usb": usb, "where": where, "key": key_for("ZIGBEE", net.name),
        "mqtt_user": f"zigbee2mqtt-{net.name}", "mqtt_key": key_for("MQTT_PASSWORD", f"zigbee2mqtt-{net.name}"),
        "host": f"{host}-{net.name}.{cluster.domain}" if host else None,
    }


def _each(kind: str, cluster: Cluster, host: str | None) -> list[dict[str, Any]]:
    if kind == "zigbee":
        return [_zigbee_item(cluster, net, host) for net in cluster.zigbee]
    raise ValueError(f"unknown `each` kind {kind!r}")


def _base_context(cluster: Cluster) -> dict[str, Any]:
    catalogue = load_catalogue()
    enabled = {a.name for a in cluster.apps if a.enabled}
    return {
        "distro": app_distro(cluster),
        "s3": _s3(cluster),
        "secret": {k.name: placeholder(k.name) for k in required_keys(cluster)},
        "tls": tls_context(cluster),
        "mqtt_users": [{"name": u.name, "key": u.key, "readwrite": u.readwrite, "read": u.read, "role": u.role,
                        "instance": u.instance} for u in mqtt_policy(cluster)],
        "enabled_apps": sorted(enabled),
        "app_settings": {a.name: dict(a.settings) for a in cluster.apps if a.enabled},
        "app_namespaces": sorted({catalogue[name].namespace for name in enabled}
                                 | ({CUSTOM_NAMESPACE} if cluster.custom_apps else set())),
    }


def _app_context(cluster: Cluster, spec: AppSpec, settings: Mapping[str, Any],
                 workloads: list[Workload]) -> dict[str, Any]:
    expose = dict(spec.expose)
    host = expose.get("host")
    return {
        **_base_context(cluster),
        "app": {
            "name": spec.name, "namespace": spec.namespace, "priority_class": spec.priority_class,
            "description": spec.description, "images": _images(spec, cluster), "ports": dict(spec.ports),
            "host": f"{host}.{cluster.domain}" if host else None, "expose": expose,
        },
        "settings": dict(settings),
        "workloads": {w.name: w for w in workloads},
    }


def _kustomization(namespace: str, files: list[OutputFile]) -> OutputFile:
    resources = sorted(str(f.path) for f in files if f.format == "yaml")
    return OutputFile(PurePosixPath("kustomization.yaml"), "apps/_common/templates/kustomization.yaml.j2",
                      freeze({"namespace": namespace, "resources": resources}))


def _render_values(template: str, context: Mapping[str, Any], cluster: Cluster) -> Any:
    """A release's values: its template rendered now and read back as data."""
    from ..config.load import load_text
    from ..core.errors import ConfigError
    from ..render.jinja import render_file

    text = render_file(OutputFile(PurePosixPath("values.yaml"), template, freeze(context), format="text"),
                       {"cluster": cluster}, cluster.source).decode("utf-8")
    try:
        # hkgen's YAML 1.2 reader (libyaml-fast, ruamel's reading): ruamel's pure-Python parser
        # was a sixth of a no-op re-render.
        data = load_text(text, template).data
    except ConfigError as err:
        first = err.problems[0]
        raise RenderError([Problem(template, first.line, first.col, first.path,
                                   f"values do not parse as YAML: {first.message}")]) from err
    if not isinstance(data, dict):
        raise RenderError([Problem(template, 0, 0, "$", "values must be a mapping")])
    return data


def app_template_text(cluster: Cluster, app: str, template: str, params: Mapping[str, Any]) -> str:
    """One template of the enabled catalogue app `app`, rendered now with the context its own files
    get (the restore gate's variants of an app's CloudNativePG Cluster: restore.database_manifests).
    """
    from ..render.jinja import render_file

    spec = load_catalogue()[app]
    found = cluster.app(app)
    settings = dict(found.settings) if found is not None else {}
    context = {**_app_context(cluster, spec, settings, app_workloads(spec, settings, cluster)),
               "params": dict(params), "item": None}
    out = OutputFile(PurePosixPath(template).with_suffix(""), template, freeze(context), format="text")
    return render_file(out, {"cluster": cluster}, cluster.source).decode("utf-8")


def _catalogue_component(cluster: Cluster, spec: AppSpec, settings: dict[str, Any]) -> Component:
    workloads = app_workloads(spec, settings, cluster)
    context = _app_context(cluster, spec, settings, workloads)
    files: list[OutputFile] = []
    for f in spec.files:
        if not holds(f.when, settings, cluster):
            continue
        params = {k: resolve(v, settings) for k, v in f.params}
        items = _each(f.each, cluster, dict(spec.expose).get("host")) if f.each else [None]
        for item in items:
            output = f.output.format(name=item["name"]) if item else f.output
            ctx = {**context, "params": params, "item": item}
            files.append(OutputFile(PurePosixPath(output), f.template, freeze(ctx), format=cast(Format, f.format)))
    files.append(_kustomization(spec.namespace, files))
    charts = dict(spec.charts)
    releases = tuple(
        Release(name=r.name, namespace=spec.namespace,
                chart=Chart(r.chart, charts[r.chart], cluster.version("charts", r.chart)),
                values=freeze(_render_values(r.values, context, cluster)), timeout=r.timeout)
        for r in spec.releases if holds(r.when, settings, cluster)
    )
    enabled = {a.name for a in cluster.apps if a.enabled}
    return Component(name=spec.name, layer="apps", namespace=spec.namespace, files=tuple(files), releases=releases,
                     depends_on=tuple(d for d in spec.depends_on if d in enabled), description=spec.description)


def _custom_lb_ips(cluster: Cluster) -> dict[str, str]:
    """Fixed LAN addresses of custom apps exposed as load balancers.

    Every hkgen load balancer asks MetalLB for a fixed address, so none is handed out dynamically
    and none can take mosquitto's or the ingress' address first. A custom app with a
    `loadBalancerIP` gets that address (validated: inside the pool, unique); the others get the
    highest free addresses of the pool, in file order, so an app keeps its address while apps are
    added after it.
    """
    first, last = (ipaddress.IPv4Address(x) for x in cluster.lb_pool)
    taken = {ipaddress.IPv4Address(cluster.ingress_ip)}
    mosq = cluster.app("mosquitto")
    if mosq is not None:
        taken.add(ipaddress.IPv4Address(mosq.settings["loadBalancerIP"]))
    if cluster.dns_server_ip is not None:
        taken.add(ipaddress.IPv4Address(cluster.dns_server_ip))
    out: dict[str, str] = {}
    for app in cluster.custom_apps:
        if app.expose == "loadBalancer" and app.load_balancer_ip is not None:
            out[app.name] = app.load_balancer_ip
            taken.add(ipaddress.IPv4Address(app.load_balancer_ip))
    candidate = last
    for i, app in enumerate(cluster.custom_apps):
        if app.expose != "loadBalancer" or app.name in out:
            continue
        while candidate >= first and candidate in taken:
            candidate -= 1
        if candidate < first:
            raise ConfigError([Problem(cluster.source, 0, 0, f"$.customApps[{i}].expose",
                                       f"no free address left in the load-balancer pool for {app.name}",
                                       "widen network.loadBalancerPool")])
        out[app.name] = str(candidate)
        taken.add(candidate)
    return out


def _custom_component(cluster: Cluster, app: CustomApp, lb_ip: str | None) -> Component:
    from ..analysis.capacity import custom_workload

    workload = custom_workload(app)
    context = {
        **_base_context(cluster),
        "app": {"name": app.name, "namespace": CUSTOM_NAMESPACE, "priority_class": CUSTOM_PRIORITY,
                "host": f"{app.name}.{cluster.domain}" if app.expose == "ingress" else None,
                "load_balancer_ip": lb_ip},
        "custom": app,
        "workload": workload,
    }
    names = ["workload.yaml", "service.yaml"]
    if app.expose == "ingress":
        names.append("ingress.yaml")
        if app.login == "admin":
            names.append("login-secret.yaml")
    if app.secret_env:
        names.append("secret.yaml")
    files = [OutputFile(PurePosixPath(n), f"apps/_custom/templates/{n}.j2", freeze(context)) for n in names]
    files.append(_kustomization(CUSTOM_NAMESPACE, files))
    return Component(name=app.name, layer="apps", namespace=CUSTOM_NAMESPACE, files=tuple(files),
                     description=f"Custom app {app.name} ({app.image})")


def _check_hosts(cluster: Cluster, comps: list[Component]) -> None:
    """Two apps must not claim one web address (e.g. a custom app called `zigbee2mqtt-house`)."""
    seen: dict[str, str] = {}
    problems: list[Problem] = []
    for comp in comps:
        hosts = {f.context["app"]["host"] for f in comp.files if "app" in f.context and f.context["app"]["host"]}
        hosts |= {f.context["item"]["host"] for f in comp.files if f.context.get("item") and f.context["item"]["host"]}
        for host in sorted(hosts):
            if host in seen and seen[host] != comp.name:
                problems.append(Problem(cluster.source, 0, 0, "$.customApps",
                                        f"{comp.name} and {seen[host]} both want the web address {host}",
                                        "rename the custom app"))
            seen.setdefault(host, comp.name)
    if problems:
        raise ConfigError(problems)


def components(cluster: Cluster) -> list[Component]:
    """App components of `cluster`: every enabled catalogue app, then every custom app."""
    catalogue = load_catalogue()
    out = [_catalogue_component(cluster, catalogue[app.name], app.settings) for app in cluster.apps if app.enabled]
    lb_ips = _custom_lb_ips(cluster)
    out += [_custom_component(cluster, app, lb_ips.get(app.name)) for app in cluster.custom_apps]
    _check_hosts(cluster, out)
    return out
