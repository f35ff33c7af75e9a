"""The shipped cluster configs: Ray's own validation accepts them, the security rules hold, and broken ones fail.

Fast and offline: nothing starts Ray or contacts a cloud (one test proves the latter by making any socket
connection and any cloud SDK import fail).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from gradprom.cluster import templates as tpl
from gradprom.cluster.templates import (
    TEMPLATES,
    kind_of,
    render,
    template_text,
    validate,
    write_template,
)
from gradprom.errors import GradpromError

LAUNCHERS = ["aws-gpu", "gcp-gpu", "onprem"]
CLOUDS = ["aws-gpu", "gcp-gpu"]


@pytest.fixture()
def paths(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in checkout and token file (render only substitutes their absolute paths)."""
    source = tmp_path / "checkout"
    source.mkdir()
    token = tmp_path / "auth_token"
    token.write_text("0123456789abcdef\n")
    return source, token


def rendered(name: str, paths: tuple[Path, Path]) -> dict[str, Any]:
    return render(name, *paths)


def refused(config: dict[str, Any]) -> str:
    """The one-line message `validate` refuses `config` with."""
    with pytest.raises(GradpromError) as info:
        validate(config, "broken.yaml")
    message = str(info.value)
    assert "\n" not in message and message
    return message


def start_commands(config: dict[str, Any], key: str) -> list[str]:
    return [c for c in config[key] if "ray start" in c]


# ---------------------------------------------------------------------------------------------- catalogue


def test_catalogue_names_kinds_and_files() -> None:
    assert set(TEMPLATES) == {"aws-gpu", "gcp-gpu", "onprem", "kuberay-rayjob", "dockerfile"}
    kinds = {name: entry.kind for name, entry in TEMPLATES.items()}
    assert kinds == {"aws-gpu": "launcher", "gcp-gpu": "launcher", "onprem": "launcher",
                     "kuberay-rayjob": "kuberay", "dockerfile": "docker"}
    for name, (file, description, _kind) in TEMPLATES.items():
        assert template_text(name).strip(), file
        assert description and "\n" not in description


def test_unknown_template_name_suggests_the_right_one() -> None:
    with pytest.raises(GradpromError, match="Did you mean 'aws-gpu'"):
        template_text("aws-gpus")


# ------------------------------------------------------------------------------- Ray's validation, offline


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_templates_pass_rays_own_validation(name: str, paths: tuple[Path, Path]) -> None:
    config = rendered(name, paths)
    assert kind_of(config) == "launcher"
    prepared = validate(config, name)
    # Ray's prepare_config filled its defaults in and merged the setup commands, as `ray up` does
    assert "cluster_synced_files" in prepared and prepared["head_node_type"] in prepared["available_node_types"]
    assert prepared["head_setup_commands"][: len(config["setup_commands"])] == config["setup_commands"]
    assert config == rendered(name, paths), "validate must not change its input"


def test_validation_contacts_no_cloud(paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("cluster-config validation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for sdk in ("boto3", "botocore", "googleapiclient", "google.oauth2"):
        monkeypatch.setitem(sys.modules, sdk, None)  # importing it now raises ImportError
    for name in LAUNCHERS:
        validate(rendered(name, paths), name)


SCHEMA_BREAKS = [
    (lambda c: c.update(bogus_key=1), r"schema at the top level: .*'bogus_key' was unexpected"),
    (lambda c: c["provider"]["security_group"].update(bogus=1),
     r"schema at provider\.security_group: Additional properties are not allowed \('bogus' was unexpected\)"),
    (lambda c: c.update(max_workers="many"), r"schema at max_workers: 'many' is not of type 'integer'"),
    (lambda c: c["available_node_types"].update({7: c["available_node_types"]["gpu-spot"]}),
     r"quote setting names that are numbers"),
    (lambda c: c.pop("provider"), r"no 'provider'"),
    (lambda c: c["provider"].update(type="nosuchcloud"),
     r"Unsupported node provider: nosuchcloud; set provider.type to one of aws, azure, gcp, local"),
    (lambda c: c["provider"].update(type="readonly"), r"Unsupported node provider: readonly"),  # Ray-internal
    (lambda c: c.update(head_node={"InstanceType": "m5.large"}), r"head_node is Ray's old node format"),
    (lambda c: c.update(docker={"image": "rayproject/ray:latest"}), r"docker needs both container_name and an image"),
    (lambda c: c["available_node_types"]["gpu-spot"]["resources"].update(GPU="one"),
     r"available_node_types\.gpu-spot\.resources\.GPU: 'one' is not of type 'integer'"),
    (lambda c: c["available_node_types"]["gpu-spot"].pop("node_config"), r"'node_config' is a required property"),
    (lambda c: c.update(head_node_type="nope"), r"head_node_type"),
    (lambda c: c["available_node_types"]["gpu-spot"].update(min_workers=99), r"max_workers"),
]


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda c: c["provider"].pop("worker_ips"), r"needs provider\.head_ip and a list provider\.worker_ips"),
    (lambda c: c.update(available_node_types={"big": {"node_config": {}, "resources": {}}}),
     r"available_node_types is not supported for on-premise clusters"),
    (lambda c: (c.pop("max_workers", None), c["provider"].update(coordinator_address="10.0.0.1:1234")),
     r"coordinator_address needs max_workers"),
    (lambda c: c.update(min_workers="two"), r"min_workers 'two' is not a whole number"),
])
def test_rays_local_provider_rules_apply(break_it: Any, expected: str, paths: tuple[Path, Path]) -> None:
    config = rendered("onprem", paths)
    break_it(config)
    assert re.search(expected, refused(config))


@pytest.mark.parametrize(("settings", "low", "high"), [
    ({}, 2, 2),                                   # Ray's default: every listed worker, always on
    ({"max_workers": 10, "min_workers": 1}, 1, 2),  # both capped at the number of worker_ips
    ({"max_workers": 1, "min_workers": 0}, 0, 1),
])
def test_onprem_gets_rays_one_node_type_with_its_worker_range(settings: dict[str, int], low: int, high: int,
                                                              paths: tuple[Path, Path]) -> None:
    config = rendered("onprem", paths)
    config.pop("max_workers", None)
    config.pop("min_workers", None)
    config["provider"]["worker_ips"] = ["10.0.0.2", "10.0.0.3"]
    prepared = validate({**config, **settings})
    assert prepared["head_node_type"] == "local.cluster.node" and "min_workers" not in prepared
    assert prepared["available_node_types"] == {"local.cluster.node": {"node_config": {}, "resources": {},
                                                                       "min_workers": low, "max_workers": high}}
    assert prepared["max_workers"] == high


def _ray_defaults_file(provider: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files("ray.autoscaler").joinpath(provider, "defaults.yaml").read_text())


@pytest.mark.parametrize("name", LAUNCHERS)
def test_settings_left_out_come_from_rays_shipped_provider_defaults(name: str, paths: tuple[Path, Path]) -> None:
    config = rendered(name, paths)
    defaults = _ray_defaults_file(config["provider"]["type"])
    prepared = validate(config)
    for key in defaults.keys() - config.keys() - {"head_setup_commands", "worker_setup_commands", "min_workers"}:
        assert prepared[key] == defaults[key], key
    for key in config.keys() - {"head_setup_commands", "worker_setup_commands", "available_node_types",
                                "head_node_type", "max_workers", "min_workers"}:
        assert prepared[key] == config[key], key  # the config's own settings win, whole (as in Ray's merge)


def test_validation_imports_nothing_private_of_ray(paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Public Ray only: the schema and defaults are read as Ray's package data, never through ray.*._private."""
    for module in Path(tpl.__file__).parent.glob("*.py"):
        assert "_private" not in module.read_text(), module
    for module in [m for m in sys.modules if m.startswith("ray.autoscaler._private")] + ["ray.autoscaler._private"]:
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    for name in LAUNCHERS:
        validate(rendered(name, paths), name)


# ------------------------------------------------------------------------------------------------ security


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_security_properties(name: str, paths: tuple[Path, Path]) -> None:
    config = rendered(name, paths)
    _, token = paths
    head = start_commands(config, "head_start_ray_commands")
    workers = start_commands(config, "worker_start_ray_commands")
    assert len(head) == 1 and "--head" in head[0] and workers
    assert "--dashboard-host=127.0.0.1" in head[0]
    for command in head + workers:
        assert "RAY_AUTH_MODE=token" in command
    assert "0.0.0.0" not in json.dumps(config)
    assert "disabled" not in json.dumps(config)
    assert config["file_mounts"]["~/.ray/auth_token"] == str(token.resolve())
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not any("8265" in json.dumps(rule) or "10001" in json.dumps(rule) for rule in rules)


# left out: Ray's own AWS defaults come back, binding 0.0.0.0 without token auth
SECURITY_BREAKS = [
    (lambda c: c.pop("head_start_ray_commands"), r"binds the dashboard .* to 0\.0\.0\.0"),
    (lambda c: c.update(head_start_ray_commands=[x.replace("127.0.0.1", "0.0.0.0")
                                                 for x in c["head_start_ray_commands"]]), r"0\.0\.0\.0"),
    (lambda c: c.update(head_start_ray_commands=[x.replace("--dashboard-host=127.0.0.1", "--dashboard-host 10.0.0.5")
                                                 for x in c["head_start_ray_commands"]]), r"10\.0\.0\.5"),
    (lambda c: c.update(worker_start_ray_commands=[x.replace("RAY_AUTH_MODE=token ", "")
                                                   for x in c["worker_start_ray_commands"]]),
     r"worker `ray start` runs without RAY_AUTH_MODE=token"),
    (lambda c: c.update(head_start_ray_commands=[x.replace("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled")
                                                 for x in c["head_start_ray_commands"]]), r"RAY_AUTH_MODE=disabled"),
    (lambda c: c["file_mounts"].pop("~/.ray/auth_token"), r"~/.ray/auth_token"),
    (lambda c: c["provider"]["security_group"].update(IpPermissions=[
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
     r"opens Ray port 8265"),
    (lambda c: c["provider"]["security_group"].update(IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]), r"opens Ray port"),
]


@pytest.mark.parametrize(("break_it", "expected"), SCHEMA_BREAKS + SECURITY_BREAKS)
def test_broken_or_insecure_launcher_config_is_refused(break_it: Any, expected: str, paths: tuple[Path, Path]) -> None:
    """Ray's own validation (schema, provider rules) and gradprom's security check, each one line."""
    config = rendered("aws-gpu", paths)
    break_it(config)
    assert re.search(expected, refused(config))


def test_a_security_rule_for_ssh_only_is_fine(paths: tuple[Path, Path]) -> None:
    config = rendered("aws-gpu", paths)
    config["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]
    validate(config)


# ------------------------------------------------------------------------------------------ node layout


@pytest.mark.parametrize("name", CLOUDS)
def test_cloud_head_is_cpu_on_demand_and_gpu_workers_are_spot_and_autoscaled(name: str,
                                                                             paths: tuple[Path, Path]) -> None:
    config = rendered(name, paths)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] >= 1
    assert "InstanceMarketOptions" not in head["node_config"] and "guestAccelerators" not in head["node_config"]
    assert "scheduling" not in head["node_config"]
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert workers
    for node_type in workers.values():
        assert node_type["resources"]["GPU"] >= 1
        assert 0 <= node_type["min_workers"] < node_type["max_workers"] <= config["max_workers"]
        node = node_type["node_config"]
        if name == "aws-gpu":
            assert node["InstanceMarketOptions"]["MarketType"] == "spot"
        else:
            scheduling = node["scheduling"]
            assert scheduling.get("preemptible") is True or scheduling.get("provisioningModel") == "SPOT"
            assert node["guestAccelerators"][0]["acceleratorCount"] >= 1
    assert sum(t["min_workers"] for t in workers.values()) <= config["max_workers"]


def test_onprem_uses_the_local_provider_with_marked_placeholders(paths: tuple[Path, Path]) -> None:
    config = rendered("onprem", paths)
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and isinstance(provider["worker_ips"], list) and provider["worker_ips"]
    assert config["auth"]["ssh_user"] and config["auth"]["ssh_private_key"]
    lines = template_text("onprem").splitlines()
    for address in [provider["head_ip"], *provider["worker_ips"]]:
        at = next(i for i, line in enumerate(lines) if address in line)
        assert any("EDIT" in line for line in lines[max(0, at - 3): at + 1]), f"{address} is not marked EDIT"
    assert "--num-gpus=0" in start_commands(config, "head_start_ray_commands")[0]


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launchers_install_gradprom_with_the_clients_ray(name: str, paths: tuple[Path, Path]) -> None:
    raw = yaml.safe_load(template_text(name))
    assert raw["file_mounts"]["~/gradprom"] == "GRADPROM_SOURCE_DIR"
    assert raw["file_mounts"]["~/.ray/auth_token"] == "GRADPROM_AUTH_TOKEN_FILE"
    prepared = validate(rendered(name, paths))
    for role in ("head_setup_commands", "worker_setup_commands"):
        commands = " ; ".join(prepared[role])
        assert f'"ray[default,tune,train]=={ray.__version__}"' in commands
        assert re.search(r"pip install (-e )?~/gradprom\b", commands)
        assert '"torch>=2.4,<=2.14.1"' in commands
    worker_torch = [c for c in prepared["worker_setup_commands"] if "torch" in c]
    assert not any("whl/cpu" in c for c in worker_torch), "GPU workers need the CUDA build of torch"


# ------------------------------------------------------------------------------------------------ render


def test_render_substitutes_both_placeholders(paths: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source, token = paths
    monkeypatch.chdir(tmp_path)
    config = render("aws-gpu", Path("checkout"), Path("auth_token"))  # relative paths become absolute
    assert config["file_mounts"]["~/gradprom"] == str(source.resolve())
    assert config["file_mounts"]["~/.ray/auth_token"] == str(token.resolve())
    dumped = json.dumps(config)
    assert "GRADPROM_SOURCE_DIR" not in dumped and "GRADPROM_AUTH_TOKEN_FILE" not in dumped


def test_render_reads_the_users_edited_file(paths: tuple[Path, Path], tmp_path: Path) -> None:
    edited = tmp_path / "mine.yaml"
    edited.write_text(template_text("onprem").replace("192.168.1.10", "10.1.2.3")
                      + "\nsetup_commands: [ls GRADPROM_SOURCE_DIR, cat GRADPROM_AUTH_TOKEN_FILE]\n")
    config = render(edited, *paths)
    assert config["provider"]["head_ip"] == "10.1.2.3"
    assert config["setup_commands"] == [f"ls {paths[0].resolve()}", f"cat {paths[1].resolve()}"]
    # a path with YAML-special characters stays one string
    odd = tmp_path / "a: b # c"
    odd.mkdir()
    assert render(edited, odd, paths[1])["file_mounts"]["~/gradprom"] == str(odd.resolve())


@pytest.mark.parametrize(("content", "expected"), [
    (None, r"does not exist"),
    ("cluster_name: x\nprovider: {type: aws\n", r"not valid YAML at line \d+, column \d+"),
    ("- just\n- a list\n", r"holds a list, not a mapping"),
    ("", r"is empty"),
    ("# only a comment\n", r"is empty"),
])
def test_render_refuses_missing_or_unparsable_files(content: str | None, expected: str, tmp_path: Path,
                                                    paths: tuple[Path, Path]) -> None:
    path = tmp_path / "cluster.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(GradpromError) as info:
        render(path, *paths)
    assert re.search(expected, str(info.value)) and "\n" not in str(info.value)


def test_render_refuses_the_dockerfile_and_a_folder(paths: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match="Dockerfile, not a cluster config"):
        render("dockerfile", *paths)
    with pytest.raises(GradpromError, match="is a folder"):
        render(tmp_path, *paths)


def test_kind_of_tells_the_kinds_apart() -> None:
    assert kind_of({"cluster_name": "c", "provider": {"type": "aws"}}) == "launcher"
    assert kind_of({"apiVersion": "ray.io/v1", "kind": "RayJob"}) == "kuberay"
    with pytest.raises(GradpromError, match="not a cluster config"):
        kind_of({"apiVersion": "apps/v1", "kind": "Deployment"})


# ----------------------------------------------------------------------------------------- write_template


def test_write_template_copies_and_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "nested" / "aws.yaml"
    assert write_template("aws-gpu", dest) == dest
    assert dest.read_text() == template_text("aws-gpu")
    dest.write_text("# my edits\n")
    with pytest.raises(GradpromError, match="already exists.*--overwrite"):
        write_template("aws-gpu", dest)
    assert dest.read_text() == "# my edits\n"
    write_template("aws-gpu", dest, overwrite=True)
    assert dest.read_text() == template_text("aws-gpu")
    # a folder as destination keeps the shipped name
    assert write_template("dockerfile", tmp_path) == tmp_path / "Dockerfile"
    with pytest.raises(GradpromError, match="already exists"):
        write_template("dockerfile", tmp_path)


# ----------------------------------------------------------------------------------------------- kuberay


def kuberay(paths: tuple[Path, Path]) -> dict[str, Any]:
    return rendered("kuberay-rayjob", paths)


def test_kuberay_rayjob_passes_and_has_what_the_issue_asks(paths: tuple[Path, Path]) -> None:
    job = kuberay(paths)
    assert kind_of(job) == "kuberay" and validate(job) == job
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    entry = spec["entrypoint"]
    for part in ("python -m gradprom search", "--space lambda_threshold", "--dataset camus", "--data-root /data",
                 "--out /results", "--address auto"):
        assert part in entry
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert "nvidia.com/gpu" not in json.dumps(head)
    (group,) = cluster["workerGroupSpecs"]
    assert 0 <= group["minReplicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for pod in (head, group):
        (container,) = pod["template"]["spec"]["containers"]
        assert container["image"] == "REGISTRY/gradprom:0.1.0"
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/results"}
        assert pod["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    dumped = json.dumps(job)
    for exposed in ("LoadBalancer", "NodePort", "Ingress", "enableIngress"):
        assert exposed not in dumped


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda j: j.update(apiVersion="ray.io/v1alpha1"), r"not 'ray.io/v1'"),
    (lambda j: j.update(kind="Deployment"), r"kind is 'Deployment'"),
    (lambda j: j["spec"].pop("entrypoint"), r"spec\.entrypoint"),
    (lambda j: j["spec"]["rayClusterSpec"].pop("headGroupSpec"), r"headGroupSpec is missing"),
    (lambda j: j["spec"]["rayClusterSpec"].update(workerGroupSpecs=[]), r"workerGroupSpecs is missing or empty"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("maxReplicas"), r"minReplicas and maxReplicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=2),
     r"need 0 <= minReplicas <= maxReplicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas=9), r"outside minReplicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].update(serviceType="LoadBalancer"), r"LoadBalancer"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].update(serviceType="NodePort"), r"NodePort"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].update(headService={"spec": {"type": "LoadBalancer"}}),
     r"LoadBalancer"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].update(enableIngress=True), r"Ingress"),
    (lambda j: j["spec"]["rayClusterSpec"].pop("authOptions"), r"token authentication is off"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "RAY_AUTH_MODE", "value": "disabled"}), r"RAY_AUTH_MODE=disabled"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("image"),
     r"containers\[0\]\.image"),
])
def test_broken_kuberay_manifest_is_refused(break_it: Any, expected: str, paths: tuple[Path, Path]) -> None:
    job = kuberay(paths)
    break_it(job)
    assert re.search(expected, refused(job))


def test_kuberay_token_from_a_secret_on_every_container_is_accepted(paths: tuple[Path, Path]) -> None:
    job = kuberay(paths)
    cluster = job["spec"]["rayClusterSpec"]
    del cluster["authOptions"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for pod in pods:
        pod["template"]["spec"]["containers"][0]["env"] += [
            {"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "auth_token"}}}]
    validate(job)
    partial = copy.deepcopy(job)
    partial["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"] = []
    assert "token authentication is off" in refused(partial)


def test_dockerfile_builds_on_rays_gpu_image_and_installs_the_checkout() -> None:
    text = template_text("dockerfile")
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base and re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py3\d+-gpu", base.group(1))
    assert "COPY --chown=ray:users gradprom ./gradprom" in text and "pyproject.toml" in text
    assert f'"ray[default,tune,train]=={ray.__version__}" .' in text
    assert '"torch>=2.4,<=2.14.1"' in text
    assert tpl.SOURCE_PLACEHOLDER not in text
