"""Searches on a real two-node Ray cluster on this machine (tests/fixtures/ray_cluster.py): a head without CPUs and a
worker node with 2 CPUs and the custom resource `gradprom_worker`, token authentication on and off.

One cluster per auth mode serves the whole module (both start at once: a start takes 10-15 s); their teardown
is the fixture's own cleanup check. Trials ask for `gradprom_worker`, so they can only run on the worker node; the
tests also check where they ran from the pid Tune records for each trial: its log file is in the worker node's own
Ray log folder. Both clusters answer a client (nodes, tasks, per-node environment, the Jobs API); the searches run
once each, where auth matters: a Ray Job (whose driver is a `gradprom search` reaching the cluster with the head's
token) and the refusal without the token on the cluster with auth; `search --address` from the client and the
per-node data check on the one without.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from gradprom.results.parquet import read_rows
from tests.fixtures.ray_cluster import RAY_CLI, LocalRayCluster
from tests.fixtures.settings import TINY_PARAMS

pytestmark = pytest.mark.slow  # no skip: Ray's CLI, dashboard and Jobs API are project dependencies

RESOURCE = "gradprom_worker"
WORKER_RESOURCES = {RESOURCE: 2}
SMALL = ["--trials", "2", "--epochs", "1", "--device", "cpu", *TINY_PARAMS]


def gradprom_on(cluster: LocalRayCluster, *args: str, cache: Path, timeout: int = 400,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`gradprom ARGS` as a client of the cluster (its auth settings, no ~/.cache)."""
    env = env or cluster.client_environ(GRADPROM_CACHE=str(cache), COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "gradprom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cluster.tmp_path)


def ray_cli(cluster: LocalRayCluster, *args: str, env: dict[str, str] | None = None,
            timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([RAY_CLI, *args], capture_output=True, text=True,
                          timeout=timeout, env=env or cluster.client_environ(), cwd=cluster.tmp_path)


def trial_pids(experiment: Path) -> list[int]:
    """The pid of each trial's process, from Tune's result.json files (Tune records pid with every result)."""
    pids = []
    for path in experiment.glob("ray/**/result.json"):
        lines = path.read_text().splitlines()
        if lines:
            pids.append(int(json.loads(lines[-1])["pid"]))
    return pids


def ran_on(cluster: LocalRayCluster, pid: int) -> list[str]:
    """The roles of the nodes whose Ray log folder holds the log of worker process `pid`."""
    patterns = (f"worker-*-{pid}.out", f"python-core-worker-*_{pid}.log")
    return [node.role for node in (cluster.head, cluster.worker)
            if any(any(node.logs_dir.glob(pattern)) for pattern in patterns)]


def assert_lands_on_worker(cluster: LocalRayCluster, experiment: Path, expected: int) -> None:
    pids = trial_pids(experiment)
    assert len(pids) == expected, f"result.json files under {experiment}/ray: {pids}"
    for pid in pids:
        assert ran_on(cluster, pid) == ["worker"], f"trial process {pid} ran on {ran_on(cluster, pid)}"


def one_line_error(run: subprocess.CompletedProcess) -> str:
    err = run.stderr.strip()
    assert "Traceback" not in err, err[-3000:]
    assert len(err.splitlines()) == 1, err[-3000:]
    return err


MODES = {"auth": True, "noauth": False}


def start_cluster(root: Path, auth: bool) -> LocalRayCluster:
    """A started cluster under `root`, its nodes and clients sharing one gradprom cache. Each node has its own
    environment: GRADPROM_PROBE names the node, and GRADPROM_DATA holds the camus data on the head and points
    nowhere on the worker (only the data-root test reads it: the other searches use built-in data)."""
    from tests.fixtures.camus import make_2023

    make_2023(root / "data")
    cache = {"GRADPROM_CACHE": str(root / "cache")}
    cluster = LocalRayCluster(root / "cluster", auth=auth, worker_resources=WORKER_RESOURCES,
                              head_env={**cache, "GRADPROM_PROBE": "head", "GRADPROM_DATA": str(root / "data")},
                              worker_env={**cache, "GRADPROM_PROBE": "worker", "GRADPROM_DATA": str(root / "nowhere")})
    cluster.cache, cluster.data, cluster.nowhere = root / "cache", root / "data", root / "nowhere"
    return cluster.__enter__()  # stops what it started if it fails


def stop_cluster(cluster: LocalRayCluster) -> None:
    """Stop it, then the fixture's own check: not one process of the cluster is left (each pid it had is gone,
    or reused by a process outside its sessions), none of them killed, its Ray temp dir is removed, and the Ray
    logs are kept."""
    started = cluster.pids
    leaders = {cluster.head.pid, cluster.worker.pid}
    cluster.__exit__(None, None, None)
    print(f"\ntimings ({'auth' if cluster.auth else 'no auth'}): {cluster.timings}")
    assert leaders < started, f"the nodes' leaders {leaders} are not among the cluster's processes {started}"
    assert not cluster.pids and not cluster.killed, f"left behind: {cluster.pids}, killed: {cluster.killed}"
    for pid in started:  # gone, or a reused pid outside the cluster's sessions
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            assert fields[0] in "ZX" or int(fields[3]) not in leaders, f"process {pid} survived"
    assert not Path(str(cluster.head.temp_dir)).exists()
    assert (cluster.tmp_path / "worker-ray-logs" / "raylet.out").is_file()  # the Ray logs are kept


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalRayCluster]]:
    """One cluster per auth mode for the whole module, both started at once (measured: 13 s for both, 11-12 s for one)
    and stopped at once at its end; the teardown is the fixture's own cleanup check (`stop_cluster`), for each."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = {mode: pool.submit(start_cluster, tmp_path_factory.mktemp(mode), auth)
                    for mode, auth in MODES.items()}
        wait(starting.values())
        up = {mode: future.result() for mode, future in starting.items() if future.exception() is None}
        try:
            for future in starting.values():
                future.result()  # the first failed start, if any, fails the tests
            yield up
        finally:
            stopped = [pool.submit(stop_cluster, cluster) for cluster in up.values()]
            for future in stopped:
                future.result()


@pytest.fixture(params=list(MODES))
def cluster(request: pytest.FixtureRequest, clusters: dict[str, LocalRayCluster]) -> LocalRayCluster:
    """The module's cluster with token authentication on (`auth`) or off (`noauth`)."""
    return clusters[request.param]


def test_a_client_sees_two_nodes_each_with_its_own_environment(cluster: LocalRayCluster, tmp_path: Path) -> None:
    """The fixture's own check: two alive nodes on 127.0.0.1 as a client sees them, a task needing the custom
    resource runs on the worker node, each node's processes see that node's environment, and the Jobs API
    answers `ray job list` (with auth: only with the token). That a job really runs there: the search below."""
    by_id = {n["NodeID"]: n for n in cluster.nodes}
    head, worker = by_id[cluster.head.node_id], by_id[cluster.worker.node_id]
    assert head["NodeManagerAddress"] == worker["NodeManagerAddress"] == "127.0.0.1"
    assert head["Resources"].get("CPU", 0) == 0 and RESOURCE not in head["Resources"]
    assert worker["Resources"]["CPU"] == 2 and worker["Resources"][RESOURCE] == 2

    # a client: both nodes alive; a task needing the resource runs on the worker node; each node's
    # processes see that node's own environment (what per-node data roots rely on)
    probe = ("import json, os, sys, ray\n"
             "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On\n"
             "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "alive = sum(n['Alive'] for n in ray.nodes())\n"
             "where = ray.remote(lambda: (ray.get_runtime_context().get_node_id(), os.getpid()))\n"
             f"node, pid = ray.get(where.options(num_cpus=1, resources={{'{RESOURCE}': 1}}).remote())\n"
             "read = ray.remote(lambda: os.environ.get('GRADPROM_PROBE'))\n"
             "envs = [ray.get(read.options(num_cpus=0, scheduling_strategy=On(n, soft=False)).remote())\n"
             "        for n in sys.argv[2:]]\n"
             "print(json.dumps({'alive': alive, 'node': node, 'pid': pid, 'envs': envs}))\n")
    seen = subprocess.run([sys.executable, "-c", probe, cluster.gcs_address, cluster.head.node_id,
                           cluster.worker.node_id], capture_output=True, text=True, timeout=120,
                          env=cluster.client_environ(GRADPROM_PROBE="client"), cwd=tmp_path)
    assert seen.returncode == 0, seen.stderr[-3000:]
    seen = json.loads(seen.stdout.strip().splitlines()[-1])
    assert seen["alive"] == 2 and seen["node"] == cluster.worker.node_id
    assert ran_on(cluster, seen["pid"]) == ["worker"]
    assert seen["envs"] == ["head", "worker"]

    jobs = ray_cli(cluster, "job", "list", "--address", cluster.dashboard_url)
    assert jobs.returncode == 0, jobs.stdout[-2000:] + jobs.stderr[-2000:]
    if cluster.auth:
        (tmp_path / "empty-home").mkdir()
        no_token = cluster.client_environ(drop=("RAY_AUTH_TOKEN_PATH",), HOME=str(tmp_path / "empty-home"))
        refused = ray_cli(cluster, "job", "list", "--address", cluster.dashboard_url, env=no_token)
        assert refused.returncode != 0, refused.stdout[-2000:]


def test_search_on_two_nodes_lands_trials_on_the_worker(clusters: dict[str, LocalRayCluster], tmp_path: Path) -> None:
    """`gradprom search --address` from a client (without auth: with it, the job below connects the same way, with
    the head's token): trials need the worker's resource and run there."""
    cluster = clusters["noauth"]
    out = tmp_path / "out"
    run = gradprom_on(cluster, "search", "--address", cluster.gcs_address, "--trial-resource", f"{RESOURCE}=1",
                      "--cpus-per-trial", "1", "--out", str(out), "--name", "multi", *SMALL, cache=cluster.cache)
    assert run.returncode == 0, run.stderr[-3000:] + "\n" + cluster.describe()
    trials = read_rows(out / "multi" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials), trials
    assert_lands_on_worker(cluster, out / "multi", 2)


def test_cluster_submit_runs_a_search_as_a_ray_job(clusters: dict[str, LocalRayCluster], tmp_path: Path) -> None:
    """`gradprom cluster submit --wait -- search …` on the cluster with auth: a Ray Job on the head whose driver
    (`gradprom search`, checking and reaching the cluster with the head's token) runs trials on the worker; the
    same submit without the token is refused in one line."""
    cluster = clusters["auth"]
    out = tmp_path / "jobout"
    args = ["cluster", "submit", "--address", cluster.dashboard_url, "--wait", "--", "search", "--out", str(out),
            "--name", "viajob", "--trial-resource", f"{RESOURCE}=1", *SMALL]
    (tmp_path / "empty-home").mkdir()
    no_token = cluster.client_environ(drop=("RAY_AUTH_TOKEN_PATH",), HOME=str(tmp_path / "empty-home"),
                                      GRADPROM_CACHE=str(cluster.cache), COLUMNS="120")
    refused = gradprom_on(cluster, *args, cache=cluster.cache, env=no_token, timeout=120)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    err = one_line_error(refused)
    assert "token" in err.lower() or "authentic" in err.lower(), err
    assert not (out / "viajob").exists()

    run = gradprom_on(cluster, *args, cache=cluster.cache)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + "\n" + cluster.describe()
    trials = read_rows(out / "viajob" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials), trials
    assert_lands_on_worker(cluster, out / "viajob", 2)


def test_data_root_is_checked_on_every_node(clusters: dict[str, LocalRayCluster], tmp_path: Path) -> None:
    """The head (and the client) have the camus data under $GRADPROM_DATA, the worker node's $GRADPROM_DATA
    points nowhere: the search stops before any trial, in one line naming the worker node."""
    cluster = clusters["noauth"]
    env = cluster.client_environ(GRADPROM_DATA=str(cluster.data), GRADPROM_CACHE=str(cluster.cache), COLUMNS="120")
    run = gradprom_on(cluster, "search", "--address", cluster.gcs_address, "--dataset", "camus", "--task",
                      "segmentation", "--trial-resource", f"{RESOURCE}=1", "--out", str(tmp_path / "out"),
                      "--name", "nodata", *SMALL, "-p", "batch_size=4", cache=cluster.cache, env=env)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    err = one_line_error(run)
    # both nodes are 127.0.0.1 here, so only the node's name (or id) tells which one lacks the data
    assert cluster.worker.name in err or cluster.worker.node_id in err, \
        f"the error does not name the worker node {cluster.worker.name}: {err}"
    assert cluster.head.name not in err and cluster.head.node_id not in err, err
    assert "camus" in err and str(cluster.nowhere) in err, err
    assert not trial_pids(tmp_path / "out" / "nodata")  # no trial started
