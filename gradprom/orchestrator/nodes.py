"""What the Ray cluster's nodes offer a search, checked before trials start: room for a trial, and the data.

On a local runtime a trial that fits no node would wait forever, so that is one line and exit 2. On a
cluster the autoscaler may still add the node, so the search says it waits instead of failing. Real
datasets are read on every node that can host a trial (a Ray task pinned to each), so a node without the
data is named before any trial lands there and fails.
"""

from __future__ import annotations

from typing import Any

from gradprom.errors import GradpromError

PROBE_TIMEOUT_S = 300  # reading one sample per split on a node (first import of torch included)


def fits(node_resources: dict[str, float], need: dict[str, float]) -> bool:
    """Whether a node with these total resources can hold one trial worker needing `need`."""
    return all(node_resources.get(k, 0.0) >= v for k, v in need.items() if v)


def describe(need: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in need.items() if v)


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def node_label(node: dict[str, Any]) -> str:
    """A node as users know it: its name/IP and host name."""
    name, host = node.get("NodeName") or node.get("NodeManagerAddress", "?"), node.get("NodeManagerHostname", "")
    return f"{name} ({host})" if host and host != name else str(name)


def capacity_note(need: dict[str, float], nodes: list[dict[str, Any]], on_cluster: bool) -> str:
    """'' when some node fits a trial worker now; on a cluster, what the search waits for; locally, an error."""
    if any(fits(n.get("Resources", {}), need) for n in nodes):
        return ""
    if not on_cluster:
        raise GradpromError(f"no node of this local Ray runtime has what one trial needs ({describe(need)}), so no "
                            "trial could ever start; lower --cpus-per-trial/--gpus-per-trial, drop --trial-resource, "
                            "or run on a cluster with --address")
    return f"waiting for the autoscaler: no node has {describe(need)} for a trial yet"


def _probe_data(values: dict[str, Any]) -> str:
    """On one node: read one sample per split of the trial's dataset(s) as a trial would ('' = fine)."""
    import socket

    from gradprom.trainables.config import TrialConfig
    from gradprom.trainables.loop import read_samples

    try:
        read_samples(TrialConfig.from_dict(values))
    except GradpromError as exc:
        return f"{str(exc)} [on host {socket.gethostname()}]"
    return ""


def check_data_on_nodes(base: dict[str, Any], need: dict[str, float]) -> int:
    """Read the trials' real dataset(s) on every alive node that can host a trial; raise one line naming the
    first node that lacks them. Returns how many nodes were checked (0 for built-in data)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from gradprom.datasets import dataset_info

    datasets = [base["dataset"]] + ([base["eval_dataset"]] if base.get("eval_dataset") else [])
    if not any("data_root" in dataset_info(d)["options"] for d in datasets):
        return 0
    hosts = [n for n in alive_nodes() if fits(n.get("Resources", {}), need)]
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_data)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(base)
            for n in hosts]
    try:
        found = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as exc:
        raise GradpromError(f"checking the data on {len(hosts)} node(s) took over {PROBE_TIMEOUT_S} s; are the "
                            "nodes busy or gradprom missing there?") from exc
    bad = [(n, msg) for n, msg in zip(hosts, found, strict=True) if msg]
    if bad:
        node, msg = bad[0]
        raise GradpromError(f"node {node_label(node)} cannot read the data ({len(bad)} of {len(hosts)} nodes): {msg}; "
                            "put the dataset on every node at the same --data-root (or $GRADPROM_DATA), or on "
                            "shared storage")
    return len(hosts)
