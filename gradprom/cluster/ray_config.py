"""What `ray up` makes of a launcher config before it contacts a cloud, redone on Ray's public data files.

Ray's `prepare_config` and `validate_config` are private; their steps are repeated here on the files Ray ships as
package data: each provider's defaults.yaml (merged in, start commands included, which gradprom's security check
reads) and Ray's JSON schema (ray-schema.json), plus Ray's cross-field rules. So a config that passes fails later
only for cloud reasons (quota, credentials, capacity). Every problem is one `GradpromError` line.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from importlib import resources
from typing import Any

import yaml

from gradprom.errors import GradpromError

_RAY_DATA = "ray.autoscaler"  # Ray's schema and per-provider defaults.yaml ship here as package data
_LOCAL_TYPE = "local.cluster.node"  # the one node type Ray gives an on-prem (`local` provider) cluster
_EXTERNAL = {"available_node_types": {"ray.head.default": {}, "ray.worker.default": {}},
             "head_node_type": "ray.head.default"}  # Ray's start for `type: external`: the config brings the rest
_MAX_DETAIL = 300


def short(text: object) -> str:
    line = " ".join(str(text).split()).rstrip(".")
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


@functools.cache
def _ray_data(name: str) -> Any:
    """A file Ray ships as package data (its schema, each provider's defaults); Ray's code reading them is private."""
    try:
        text = resources.files(_RAY_DATA).joinpath(name).read_text(encoding="utf-8")
    except (ImportError, OSError) as exc:
        raise GradpromError(f"cannot read Ray's ray/autoscaler/{name} ({short(exc)}); reinstall Ray: "
                            "pip install 'ray[default]'") from exc
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def _ray_defaults(kind: Any, where: str) -> dict[str, Any]:
    """The provider's defaults as `ray up` takes them: ray/autoscaler/<type>/defaults.yaml."""
    shipped = sorted(d.name for d in resources.files(_RAY_DATA).iterdir() if d.joinpath("defaults.yaml").is_file())
    if kind not in [*shipped, "external"]:
        raise GradpromError(f"{where}: Unsupported node provider: {kind}; set provider.type to one of "
                            f"{', '.join(shipped)} (or external, with provider.module)")
    return copy.deepcopy(_EXTERNAL if kind == "external" else _ray_data(f"{kind}/defaults.yaml"))


def _check_schema(config: dict[str, Any], where: str) -> None:
    """Ray's own JSON schema for cluster configs (ray-schema.json), the one `ray up` checks against."""
    import jsonschema  # a dependency of Ray itself

    try:
        jsonschema.validate(config, _ray_data("ray-schema.json"))
    except jsonschema.ValidationError as exc:
        at = ".".join(str(p) for p in exc.absolute_path) or "the top level"
        raise GradpromError(f"{where} fails Ray's cluster-config schema at {at}: {short(exc.message)}; "
                            "fix that setting (the shipped templates show valid ones)") from exc
    except TypeError as exc:  # a name that is not text (an unquoted number) defeats the schema's name patterns
        raise GradpromError(f"{where} cannot be checked against Ray's schema ({short(exc)}); quote setting "
                            "names that are numbers") from exc


def _prepare_local(config: dict[str, Any], min_workers: Any, where: str) -> None:
    """Ray's on-prem rules: one node type, its worker range from worker_ips (or from a coordinator)."""
    provider = config["provider"]
    if config.get("available_node_types"):
        raise GradpromError(f"{where}: available_node_types is not supported for on-premise clusters (provider type "
                            "local); remove it: Ray makes the one node type from head_ip and worker_ips")
    if min_workers is not None and type(min_workers) is not int:
        raise GradpromError(f"{where}: min_workers {min_workers!r} is not a whole number; fix it or remove it")
    if "coordinator_address" in provider:
        if "max_workers" not in config:
            raise GradpromError(f"{where}: provider.coordinator_address needs max_workers; set it")
        low, high = min_workers or 0, config["max_workers"]
    elif "worker_ips" in provider and "head_ip" in provider:  # Ray caps both at the number of listed workers
        count = len(provider["worker_ips"])
        high = config["max_workers"] = min(config.get("max_workers", count), count)
        low = min(count if min_workers is None else min_workers, count)
    else:
        raise GradpromError(f"{where}: the local provider needs provider.head_ip and a list provider.worker_ips "
                            "(or a coordinator_address); add them")
    config["available_node_types"] = {_LOCAL_TYPE: {"node_config": {}, "resources": {}, "min_workers": low,
                                                    "max_workers": high}}
    config["head_node_type"] = _LOCAL_TYPE


def prepare_and_validate(config: dict[str, Any], where: str) -> dict[str, Any]:
    """What `ray up` makes of a config before it contacts a cloud, and its checks: Ray's `prepare_config` and
    `validate_config` are private, so their steps are redone here on Ray's public data files (the defaults fill
    settings the config leaves out, start commands too, which the security check reads)."""
    provider = config.get("provider")
    if not isinstance(provider, dict) or not provider.get("type"):
        raise GradpromError(f"{where} has no 'provider' with a 'type' (aws, gcp, local, ...); "
                            "start from a shipped template")
    kind, merged = provider["type"], copy.deepcopy(config)
    # KubeRay makes its autoscaler config from the RayCluster; an on-prem config `ray up` prepared is final
    prepare = kind != "kuberay" and not (kind == "local" and _LOCAL_TYPE in (merged.get("available_node_types") or {}))
    min_workers = merged.pop("min_workers", None) if prepare else None  # Ray drops a global min_workers
    if prepare:
        merged = {**_ray_defaults(kind, where), **merged}  # top-level settings, as Ray merges them
        merged.setdefault("auth", {})
        for legacy in ("head_node", "worker_nodes"):
            if merged.pop(legacy, None):
                raise GradpromError(f"{where}: {legacy} is Ray's old node format, which Ray no longer accepts; "
                                    "describe the nodes under available_node_types and head_node_type")
    _check_schema(merged, where)  # first, so the steps below read values of the types Ray expects
    if prepare:
        if kind == "local":
            _prepare_local(merged, min_workers, where)
        for role in ("head_setup_commands", "worker_setup_commands"):
            merged[role] = [*merged.get("setup_commands", []), *merged.get(role, [])]
        docker = merged.get("docker") or {}
        image = docker.get("image") or (docker.get("head_image") and docker.get("worker_image"))
        if bool(docker.get("container_name")) != bool(image):
            raise GradpromError(f"{where}: docker needs both container_name and an image (image, or head_image and "
                                "worker_image); set both or remove the docker section")
        if "max_workers" not in merged:
            raise GradpromError(f"{where} has no max_workers; set the most worker nodes the cluster may add")
        for name, node_type in (merged.get("available_node_types") or {}).items():
            node_type.setdefault("min_workers", 0)
            node_type.setdefault("max_workers", 0 if name == merged.get("head_node_type") else merged["max_workers"])
    _check_ray_rules(merged, where)
    return merged


def _check_ray_rules(config: dict[str, Any], where: str) -> None:
    """The cross-field rules Ray's `validate_config` adds to its schema."""
    if "cluster_synced_files" not in config:
        raise GradpromError(f"{where} has no cluster_synced_files (Ray's provider defaults add it); add "
                            "`cluster_synced_files: []`")
    types, head = config.get("available_node_types"), config.get("head_node_type")
    if types is not None and head not in types:
        raise GradpromError(f"{where}: head_node_type {head!r} is not one of available_node_types "
                            f"({', '.join(map(str, types))}); name the head's node type there")
    total = sum(node_type.get("min_workers", 0) for node_type in (types or {}).values())
    if types is not None and ("max_workers" not in config or total > config["max_workers"]):
        raise GradpromError(f"{where}: the node types' min_workers add up to {total}, more than max_workers "
                            f"({config.get('max_workers', 'not set')}); raise max_workers or lower min_workers")
    if sys.platform == "win32" and config.get("file_mounts_sync_continuously"):
        raise GradpromError(f"{where}: file_mounts_sync_continuously is not supported on Windows; set it to false")
