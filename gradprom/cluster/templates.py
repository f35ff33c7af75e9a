"""The shipped cluster configs: list them, copy them out, render their placeholders and check them.

Launcher configs (`ray up` format) get the checks `ray up` makes before it contacts a cloud, built only on
files Ray ships as public data: the provider's defaults.yaml merged in and Ray's JSON schema (ray-schema.json),
plus Ray's cross-field rules, so a config that passes fails later only for cloud reasons (quota, credentials,
capacity). No private Ray module is imported. KubeRay manifests have no validator in Ray; they get a structural
check. Both kinds also get gradprom's security check: the dashboard and Jobs API stay off the internet and token
authentication stays on. Every problem is one `GradpromError` line saying what is wrong and what to do.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gradprom.cluster.ray_config import prepare_and_validate, short
from gradprom.errors import GradpromError, unknown_name

SOURCE_PLACEHOLDER = "GRADPROM_SOURCE_DIR"
TOKEN_PLACEHOLDER = "GRADPROM_AUTH_TOKEN_FILE"
LAUNCHER, KUBERAY, DOCKER = "launcher", "kuberay", "docker"


class Template(NamedTuple):
    """One shipped file: its name in the package, what it is for, and which kind of config it is."""

    file: str
    description: str
    kind: str


TEMPLATES: dict[str, Template] = {
    "aws-gpu": Template("aws-gpu.yaml", "AWS: on-demand CPU head, autoscaling spot GPU workers (g5.xlarge)",
                        LAUNCHER),
    "gcp-gpu": Template("gcp-gpu.yaml", "Google Cloud: on-demand CPU head, autoscaling Spot GPU workers (T4)",
                        LAUNCHER),
    "onprem": Template("onprem.yaml", "lab workstations over SSH (Ray's local provider): edit head_ip, worker_ips",
                       LAUNCHER),
    "kuberay-rayjob": Template("kuberay-rayjob.yaml", "Kubernetes: a KubeRay RayJob running one search on "
                               "autoscaled GPU workers", KUBERAY),
    "dockerfile": Template("Dockerfile", "the image the KubeRay RayJob runs (Ray 2.60.0 GPU + gradprom)", DOCKER),
}

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_RAY_PORTS = {6379: "GCS", 8265: "dashboard/Jobs API", 10001: "Ray Client"}
_PUBLIC_CIDRS = {"0.0.0.0/0", "::/0"}


def _template(name: str) -> Template:
    if name not in TEMPLATES:
        raise unknown_name("cluster template", name, TEMPLATES)
    return TEMPLATES[name]


def template_text(name: str) -> str:
    """The shipped file as text, read from the installed package (works from a wheel as well as a checkout)."""
    entry = _template(name)
    return resources.files("gradprom.cluster").joinpath("templates", entry.file).read_text(encoding="utf-8")


def write_template(name: str, dest: Path, overwrite: bool = False) -> Path:
    """Write a copy of a shipped file for the user to edit; an existing file is kept unless `overwrite`.

    `dest` may be a folder (the file keeps its shipped name there). Returns the path written.
    """
    text = template_text(name)
    dest = Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / TEMPLATES[name].file
    if dest.exists() and not overwrite:
        raise GradpromError(f"{dest} already exists; edit it, choose another path, or pass --overwrite to replace it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GradpromError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return dest


def _read_config(config_path_or_name: str | Path) -> tuple[str, str]:
    """(text, where) for a shipped template name or a path to the user's file."""
    if isinstance(config_path_or_name, str) and config_path_or_name in TEMPLATES:
        entry = TEMPLATES[config_path_or_name]
        if entry.kind == DOCKER:
            raise GradpromError(f"'{config_path_or_name}' is a Dockerfile, not a cluster config; give one of: "
                                f"{', '.join(n for n, t in TEMPLATES.items() if t.kind != DOCKER)}")
        return template_text(config_path_or_name), f"template '{config_path_or_name}'"
    path = Path(config_path_or_name).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        shipped = [n for n, t in TEMPLATES.items() if t.kind != DOCKER]
        close = difflib.get_close_matches(str(config_path_or_name), shipped, n=1)
        hint = f" Did you mean the template '{close[0]}'?" if close else ""
        raise GradpromError(f"cluster config {path} {what}.{hint} Give the path of a YAML file or a shipped template "
                            f"name ({', '.join(shipped)})")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise GradpromError(f"cannot read cluster config {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GradpromError(f"cluster config {where} is not valid YAML{at}: {problem}; fix the file") from exc
    if config is None:
        raise GradpromError(f"cluster config {where} is empty; start from a shipped template")
    if not isinstance(config, dict):
        raise GradpromError(f"cluster config {where} holds a {type(config).__name__}, not a mapping of settings; "
                            "start from a shipped template")
    return config


def _substitute(value: Any, swap: Callable[[str], str]) -> Any:
    """`value` with `swap` applied to every string in it, keys included (file_mounts are keyed by path)."""
    if isinstance(value, str):
        return swap(value)
    if isinstance(value, dict):
        return {_substitute(k, swap): _substitute(v, swap) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, swap) for v in value]
    return value


def render(config_path_or_name: str | Path, source_dir: Path, token_file: Path) -> dict[str, Any]:
    """Load a config (a shipped template name, or the path of the user's edited YAML) with its placeholders filled.

    GRADPROM_SOURCE_DIR becomes the absolute path of the gradprom checkout the launcher copies to the nodes,
    GRADPROM_AUTH_TOKEN_FILE the absolute path of the Ray token file it copies to ~/.ray/auth_token. Substitution
    happens on the parsed YAML, so a path with YAML-special characters cannot change the config's structure.
    """
    text, where = _read_config(config_path_or_name)
    config = _parse_yaml(text, where)
    source = str(Path(source_dir).expanduser().resolve())
    token = str(Path(token_file).expanduser().resolve())
    return _substitute(config, lambda s: s.replace(SOURCE_PLACEHOLDER, source).replace(TOKEN_PLACEHOLDER, token))


def kind_of(config: dict[str, Any]) -> str:
    """Which tool takes the config: "launcher" (Ray's `ray up`) or "kuberay" (a manifest for `kubectl apply`)."""
    if isinstance(config, dict):
        if str(config.get("apiVersion", "")).startswith("ray.io/") or config.get("kind") in ("RayJob", "RayCluster"):
            return KUBERAY
        if "provider" in config or "cluster_name" in config:
            return LAUNCHER
    raise GradpromError("not a cluster config: a Ray cluster-launcher config has 'provider' and 'cluster_name', "
                        "a KubeRay manifest has 'apiVersion: ray.io/v1'; start from a shipped template")


def validate(config: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Check a rendered config; returns what the launcher should use (Ray's defaults filled in for `ray up`).

    Launcher configs get what `ray up` does first: Ray's per-provider defaults merged in, then Ray's JSON schema
    and its cross-field rules. Only data files inside the Ray package are read: no cloud SDK is imported and
    nothing is contacted. `ray up` then also runs the provider's bootstrap, which does talk to the cloud; that
    part is deliberately left to `ray up`.
    """
    where = f"cluster config {source}" if source else "cluster config"
    if kind_of(config) == KUBERAY:
        _check_kuberay(config, where)
        return copy.deepcopy(config)
    prepared = prepare_and_validate(config, where)
    _check_launcher_security(prepared, where)
    return prepared


# ---------------------------------------------------------------------------------------------- launcher


def _start_commands(config: dict[str, Any], key: str) -> list[str]:
    commands = config.get(key) or []
    return [c for c in commands if isinstance(c, str) and re.search(r"\bray\s+start\b", c)]


def _token_mode_on(command: str) -> bool:
    return re.search(r"""\bRAY_AUTH_MODE=["']?token["']?(?=\s|;|$)""", command) is not None


def _dashboard_hosts(command: str) -> list[str]:
    return [h.strip("\"'") for h in re.findall(r"--dashboard-host(?:=|\s+)(\S+)", command)]


def _mounts_token(config: dict[str, Any], commands: list[str]) -> bool:
    mounts = config.get("file_mounts") or {}
    if any(str(remote).rstrip("/").endswith(".ray/auth_token") for remote in mounts):
        return True
    # A token given some other way must reach every `ray start`.
    return bool(commands) and all(re.search(r"\bRAY_AUTH_TOKEN(_PATH)?=", c) for c in commands)


def _ports(rule: dict[str, Any]) -> range:
    if str(rule.get("IpProtocol", "tcp")) == "-1" or rule.get("FromPort") in (None, -1):
        return range(0, 65536)
    return range(int(rule["FromPort"]), int(rule.get("ToPort", rule["FromPort"])) + 1)


def _public_ray_ports(config: dict[str, Any]) -> list[str]:
    """Ray ports that an AWS security-group rule in the config opens to the whole internet."""
    rules = ((config.get("provider") or {}).get("security_group") or {}).get("IpPermissions") or []
    found = []
    for rule in rules:
        cidrs = {r.get("CidrIp") for r in rule.get("IpRanges") or []} | {
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges") or []}
        if cidrs & _PUBLIC_CIDRS:
            found += [f"{port} ({what})" for port, what in _RAY_PORTS.items() if port in _ports(rule)]
    return found


def _check_launcher_security(config: dict[str, Any], where: str) -> None:
    """Refuse a launcher config that exposes the dashboard/Jobs API or starts Ray without token auth."""
    head = _start_commands(config, "head_start_ray_commands")
    workers = _start_commands(config, "worker_start_ray_commands")
    if not any("--head" in c for c in head):
        raise GradpromError(f"{where}: head_start_ray_commands has no `ray start --head`; copy the start commands "
                            "from a shipped template")
    for command in head:
        exposed = [h for h in _dashboard_hosts(command) if h not in _LOOPBACK]
        if exposed:
            raise GradpromError(
                f"{where}: the head's `ray start` binds the dashboard and Jobs API (8265) to {exposed[0]}, "
                "reachable from the network (Ray's own cloud defaults do this when head_start_ray_commands is "
                "left out); use --dashboard-host=127.0.0.1 and reach it through `ray dashboard CONFIG`")
    if re.search(r"\bRAY_AUTH_MODE=[\"']?disabled", " ".join(head + workers)):
        raise GradpromError(f"{where}: a `ray start` sets RAY_AUTH_MODE=disabled; gradprom keeps Ray's token "
                            "authentication on: use RAY_AUTH_MODE=token")
    for role, commands in (("head", head), ("worker", workers)):
        missing = [c for c in commands if not _token_mode_on(c)]
        if missing:
            raise GradpromError(f"{where}: a {role} `ray start` runs without RAY_AUTH_MODE=token, so that node "
                                "would have no token authentication; prefix it with RAY_AUTH_MODE=token: "
                                f"{short(missing[0])}")
    if not _mounts_token(config, head + workers):
        raise GradpromError(f"{where}: no file mount puts the Ray token at ~/.ray/auth_token on the nodes; add "
                            f"'~/.ray/auth_token: {TOKEN_PLACEHOLDER}' under file_mounts")
    public = _public_ray_ports(config)
    if public:
        raise GradpromError(f"{where}: provider.security_group opens Ray port {public[0]} to the internet; remove "
                            "that rule and use the SSH tunnel (`ray dashboard CONFIG`)")


# ----------------------------------------------------------------------------------------------- kuberay


def _need(value: Any, kind: type, what: str, where: str) -> Any:
    if not isinstance(value, kind) or (kind in (str, list, dict) and not value):
        raise GradpromError(f"{where}: {what} is missing or empty; start from the shipped kuberay-rayjob template")
    return value


def _containers(group: dict[str, Any], what: str, where: str) -> list[dict[str, Any]]:
    template = _need(group.get("template"), dict, f"{what}.template", where)
    spec = _need(template.get("spec"), dict, f"{what}.template.spec", where)
    containers = _need(spec.get("containers"), list, f"{what}.template.spec.containers", where)
    for i, container in enumerate(containers):
        _need(container, dict, f"{what}.template.spec.containers[{i}]", where)
        _need(container.get("image"), str, f"{what}.template.spec.containers[{i}].image", where)
    return containers


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, dict)}


def _check_kuberay(config: dict[str, Any], where: str) -> None:
    """Structure and security of a KubeRay RayJob (or RayCluster): what `kubectl apply` would not catch early."""
    if config.get("apiVersion") != "ray.io/v1":
        raise GradpromError(f"{where}: apiVersion is {config.get('apiVersion')!r}, not 'ray.io/v1' (KubeRay >= 1.0)")
    kind = config.get("kind")
    spec = _need(config.get("spec"), dict, "spec", where)
    if kind == "RayJob":
        _need(spec.get("entrypoint"), str, "spec.entrypoint (the command the job runs)", where)
        cluster = _need(spec.get("rayClusterSpec"), dict, "spec.rayClusterSpec", where)
        prefix = "spec.rayClusterSpec"
    elif kind == "RayCluster":
        cluster, prefix = spec, "spec"
    else:
        raise GradpromError(f"{where}: kind is {kind!r}; gradprom's KubeRay config is a RayJob (or a RayCluster)")

    head = _need(cluster.get("headGroupSpec"), dict, f"{prefix}.headGroupSpec", where)
    head_containers = _containers(head, f"{prefix}.headGroupSpec", where)
    service_type = head.get("serviceType", "ClusterIP")
    custom = ((head.get("headService") or {}).get("spec") or {}).get("type")
    for exposed in (service_type, custom):
        if exposed in ("LoadBalancer", "NodePort"):
            raise GradpromError(f"{where}: the head service type {exposed} puts the dashboard/Jobs API (8265) and "
                                "Ray Client (10001) on a reachable address; use serviceType: ClusterIP and "
                                "`kubectl port-forward`")
    if head.get("enableIngress"):
        raise GradpromError(f"{where}: headGroupSpec.enableIngress exposes the dashboard through an Ingress; remove "
                            "it and use `kubectl port-forward`")

    groups = _need(cluster.get("workerGroupSpecs"), list, f"{prefix}.workerGroupSpecs", where)
    worker_containers = []
    for i, group in enumerate(groups):
        what = f"{prefix}.workerGroupSpecs[{i}]"
        _need(group, dict, what, where)
        _need(group.get("groupName"), str, f"{what}.groupName", where)
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not (isinstance(low, int) and isinstance(high, int)) or isinstance(low, bool) or isinstance(high, bool):
            raise GradpromError(f"{where}: {what} needs integer minReplicas and maxReplicas (the autoscaler's range)")
        if not 0 <= low <= high:
            raise GradpromError(f"{where}: {what} has minReplicas {low} and maxReplicas {high}; "
                                "need 0 <= minReplicas <= maxReplicas")
        replicas = group.get("replicas", low)
        if not isinstance(replicas, int) or not low <= replicas <= high:
            raise GradpromError(f"{where}: {what}.replicas {replicas!r} is outside minReplicas..maxReplicas")
        worker_containers += _containers(group, what, where)

    token_by_operator = (cluster.get("authOptions") or {}).get("mode") == "token"
    containers = head_containers + worker_containers
    modes = [_env(c).get("RAY_AUTH_MODE") for c in containers]
    if "disabled" in modes:
        raise GradpromError(f"{where}: a container sets RAY_AUTH_MODE=disabled; gradprom keeps Ray's token "
                            "authentication on")
    if not token_by_operator and not all(m == "token" for m in modes):
        raise GradpromError(f"{where}: token authentication is off; set {prefix}.authOptions.mode: token "
                            "(KubeRay >= 1.5.1) or give every Ray container RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                            "from a Secret")
