"""A real two-node Ray cluster on this machine, for tests (see /work/shared/ray-on-loopback.md).

`LocalRayCluster` starts a head (no CPUs, dashboard on 127.0.0.1, so Ray Jobs work) and one worker node
(CPUs plus custom resources) as two `ray start --block` processes, each the leader of its own session,
with its own ports, its own Ray temp dir and token authentication on or off. On exit it stops exactly the
processes it started: SIGTERM to the worker's leader, then the head's, then it waits until no process of
either node is left (SIGKILL for stragglers, which are recorded in `killed`). It never runs `ray stop`
and never kills by name: other Ray instances on this machine are not ours.

A process belongs to a node when it is in the Unix session of that node's leader (Ray's worker processes
get their own process groups but stay in the session), descends from the leader, or carries the node's
marker variable in its environment (every Ray process inherits the node's environment).

    with LocalRayCluster(tmp_path, auth=True, worker_resources={"gradprom_worker": 2}) as cluster:
        subprocess.run([..., "--address", cluster.gcs_address], env=cluster.client_environ())
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

#: variables that would make a Ray process join another cluster or use other credentials
SCRUBBED = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "RAY_JOB_HEADERS")
#: nothing leaves the machine
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/"}
MARKER = "GRADPROM_TEST_RAY_NODE"
#: the `ray` CLI beside this interpreter (a venv's), else the one on PATH
RAY_CLI = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").is_file() else "ray"
OBJECT_STORE = 500 * 1024 * 1024

# Ports: outside the kernel's ephemeral range (32768-60999 here; outgoing connections take those, so a port
# found free there may be taken before the worker node binds it, seconds later) and outside Ray's default
# worker ports (10002-19999) that other Ray instances on this machine use. The range is cut into blocks; a
# cluster claims one through an O_EXCL file, so two clusters started at once (two pytest runs) never share.
PORT_LOW, PORT_HIGH, BLOCK = 20000, 32000, 250
CLAIMS = Path(tempfile.gettempdir()) / "gradprom-test-ray-ports"
SINGLE_PORTS = ("node_manager", "object_manager", "agent_listen", "agent_grpc", "runtime_env_agent", "metrics")
WORKER_PORTS = 100  # per node: one per Ray worker process (trials, job drivers, idle workers)


class RayClusterError(RuntimeError):
    """The cluster did not come up; the message carries the tails of the nodes' logs."""


def _port_free(port: int) -> bool:
    for host in ("127.0.0.1", ""):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_port_block() -> tuple[int, Path]:
    """A block of BLOCK free ports no other LocalRayCluster holds: (first port, claim file)."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    starts = list(range(PORT_LOW, PORT_HIGH - BLOCK + 1, BLOCK))
    random.shuffle(starts)
    for start in starts:
        claim = CLAIMS / str(start)
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError, ValueError):
                if not _pid_alive(int(claim.read_text() or "0")):  # left by a run that died: take it over
                    claim.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        if all(_port_free(p) for p in range(start, start + BLOCK)):
            return start, claim
        claim.unlink()
    raise RayClusterError(f"no block of {BLOCK} free ports in {PORT_LOW}-{PORT_HIGH}")


def _stat(pid: str) -> tuple[int, int, str] | None:
    """(parent pid, session id, state) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[3]), fields[0]
    except (OSError, ValueError, IndexError):
        return None


def _environ_has(pid: str, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace")).splitlines()  # no colours
    except OSError:
        return f"({path}: missing)"
    return "\n".join(text[-lines:])


@dataclass
class Node:
    role: str  # "head" or "worker"
    name: str  # Ray's node name
    temp_dir: Path  # Ray's temp dir for this node (session_*/logs below it)
    log: Path  # output of `ray start`
    marker: str
    proc: subprocess.Popen | None = None
    node_id: str = ""
    killed: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def logs_dir(self) -> Path:
        """The node's Ray log folder (worker-*.out, raylet.out, …)."""
        found = sorted(self.temp_dir.glob("session_*/logs"))
        found = [p for p in found if p.parent.name != "session_latest"]
        return found[-1] if found else self.temp_dir / "session_latest" / "logs"


class LocalRayCluster:
    """A head and one worker node as two `ray start --block` processes on 127.0.0.1; a context manager.

    tmp_path: where logs, the token, HOME and the per-node Ray logs (copied at exit) go.
    auth: token authentication (RAY_AUTH_MODE=token, a fresh token in `token_file`) or RAY_AUTH_MODE=disabled.
    worker_resources: custom resources of the worker node, e.g. {"gradprom_worker": 2}.
    head_env / worker_env: extra environment of each node (its Ray processes, Ray Jobs on the head).

    After start: `gcs_address` (127.000.000.001:PORT, for drivers: `ray.init(address=...)`, `--address`),
    `dashboard_url` (http://127.0.0.1:PORT, for Ray Jobs), `client_env` (what a client process must add to its
    environment), `client_environ()` (a full environment for one), `token_file`, `head`/`worker` (`Node`:
    pid, name, node_id, temp_dir, logs_dir), `pids` (every live process of the cluster now).
    """

    def __init__(self, tmp_path: Path | str, auth: bool = True, worker_resources: dict[str, float] | None = None,
                 head_env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None,
                 worker_cpus: int = 2, start_timeout: float = 120, stop_timeout: float = 30) -> None:
        self.tmp_path = Path(tmp_path)
        self.auth = auth
        self.worker_resources = dict(worker_resources or {})
        self.head_env = dict(head_env or {})
        self.worker_env = dict(worker_env or {})
        self.worker_cpus = worker_cpus
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.token_file: Path | None = None
        self.home = self.tmp_path / "home"
        self.gcs_address = ""
        self.dashboard_url = ""
        self.nodes: list[dict] = []  # ray.nodes() of the probe, alive ones
        self.timings: dict[str, float] = {}
        self._claim: Path | None = None
        self._root: Path | None = None  # short Ray temp root: Unix socket paths must stay under 108 bytes
        self.head: Node | None = None
        self.worker: Node | None = None

    # -- environment -------------------------------------------------------------------------------------
    @property
    def client_env(self) -> dict[str, str]:
        """What a client process (a driver, `ray job submit`, `gradprom cluster submit`) must have."""
        env = {**QUIET, "HOME": str(self.home)}
        if self.auth:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file))
        else:
            env["RAY_AUTH_MODE"] = "disabled"
        return env

    def client_environ(self, *, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
        """A complete environment for a client: this process's, scrubbed of other clusters' settings, plus
        `client_env`, plus `extra`; without the variables in `drop`."""
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env.update(self.client_env)
        env.update(extra)
        for key in drop:
            env.pop(key, None)
        return env

    def _node_environ(self, node: Node, extra: dict[str, str]) -> dict[str, str]:
        env = self.client_environ(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **{MARKER: node.marker})
        if node.role == "head":
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keeps 127.0.0.1 (a worker must not have it)
        env.update(extra)
        return env

    # -- start -------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        begin = time.monotonic()
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        (self.home / "ray_bootstrap_config.yaml").write_text("{}\n")  # no cloud metadata probes
        if self.auth:
            self.token_file = self.tmp_path / "auth_token"
            self.token_file.write_text(secrets.token_hex(32))
            self.token_file.chmod(0o600)
        base, self._claim = _claim_port_block()
        ports = iter(range(base, base + BLOCK))
        self._root = Path(tempfile.mkdtemp(prefix="gpray-", dir="/tmp"))
        tag = secrets.token_hex(4)
        self.head = Node("head", f"gp-head-{tag}", self._root / "h", self.tmp_path / "head.log", f"head-{tag}")
        self.worker = Node("worker", f"gp-worker-{tag}", self._root / "w", self.tmp_path / "worker.log",
                           f"worker-{tag}")

        gcs, dashboard, client = next(ports), next(ports), next(ports)
        self.gcs_address = f"127.000.000.001:{gcs}"
        self.dashboard_url = f"http://127.0.0.1:{dashboard}"
        head_args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "0",
                     "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port",
                     str(dashboard), "--ray-client-server-port", str(client)]
        self._launch(self.head, head_args + self._node_ports(ports), self.head_env)
        self._wait_for_log(self.head, "Ray runtime started")
        self.timings["head_s"] = time.monotonic() - begin

        worker_args = ["--address", self.gcs_address, "--num-cpus", str(self.worker_cpus),
                       "--resources", json.dumps(self.worker_resources)]
        self._launch(self.worker, worker_args + self._node_ports(ports), self.worker_env)
        self._wait_for_nodes()
        self._wait_for_dashboard()
        self.timings["start_s"] = time.monotonic() - begin

    def _node_ports(self, ports) -> list[str]:  # noqa: ANN001
        named = {name: next(ports) for name in SINGLE_PORTS}
        low = next(ports)
        for _ in range(WORKER_PORTS - 1):
            high = next(ports)
        return ["--node-manager-port", str(named["node_manager"]), "--object-manager-port",
                str(named["object_manager"]), "--dashboard-agent-listen-port", str(named["agent_listen"]),
                "--dashboard-agent-grpc-port", str(named["agent_grpc"]), "--runtime-env-agent-port",
                str(named["runtime_env_agent"]), "--metrics-export-port", str(named["metrics"]),
                "--min-worker-port", str(low), "--max-worker-port", str(high)]

    def _launch(self, node: Node, args: list[str], extra_env: dict[str, str]) -> None:
        command = [RAY_CLI, "start", "--block", *args, "--num-gpus", "0",
                   "--object-store-memory", str(OBJECT_STORE), "--temp-dir", str(node.temp_dir),
                   "--node-name", node.name, "--disable-usage-stats"]
        with open(node.log, "wb") as log:
            # start_new_session: the child calls setsid() itself, as `setsid ray start` would; its pid is the
            # leader, and the session id of every Ray process of this node
            node.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=self._node_environ(node, extra_env), start_new_session=True,
                                         cwd=self.tmp_path)

    def describe(self) -> str:
        """The tails of the nodes' logs, for a failure message."""
        parts = []
        nodes = [node for node in (self.head, self.worker) if node is not None]
        for node in sorted(nodes, key=lambda n: n.proc is not None and n.proc.poll() is None):  # failed first
            state = "not started" if node.proc is None else (
                "running" if node.proc.poll() is None else f"exited with {node.proc.returncode}")
            parts.append(f"--- {node.role} (pid {node.pid}, {state}): {node.log}\n{_tail(node.log)}")
            for name in ("raylet.err", "gcs_server.err", "dashboard.err"):
                path = node.logs_dir / name
                if path.is_file() and path.stat().st_size:
                    parts.append(f"--- {node.role} {name}\n{_tail(path, 20)}")
        return "\n".join(parts)

    def _fail(self, why: str) -> RayClusterError:
        return RayClusterError(f"the two-node Ray cluster did not come up: {why}\n{self.describe()}")

    def _check_alive(self) -> None:
        for node in (self.head, self.worker):
            if node and node.proc and node.proc.poll() is not None:
                raise self._fail(f"the {node.role} node's `ray start` exited with {node.proc.returncode}")

    def _wait_for_log(self, node: Node, text: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                if text in node.log.read_text(errors="replace"):
                    return
            time.sleep(0.1)
        raise self._fail(f"no '{text}' in the {node.role} node's log after {self.start_timeout:.0f} s")

    def _wait_for_nodes(self) -> None:
        """Both nodes alive in ray.nodes(), seen by a driver with `client_env` (which checks that too)."""
        probe = ("import json, sys, time, ray\n"
                 "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
                 "deadline = time.monotonic() + float(sys.argv[2])\n"
                 "while True:\n"
                 "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
                 "    if len(nodes) >= 2 or time.monotonic() > deadline:\n"
                 "        break\n"
                 "    time.sleep(0.1)\n"
                 "keys = ('NodeID', 'NodeName', 'NodeManagerAddress', 'Resources')\n"
                 "print('NODES ' + json.dumps([{k: n[k] for k in keys} for n in nodes]))\n")
        run = subprocess.Popen([sys.executable, "-c", probe, self.gcs_address, str(self.start_timeout)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=self.client_environ(), cwd=self.tmp_path)
        deadline = time.monotonic() + self.start_timeout + 30
        while run.poll() is None:
            try:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise self._fail("the node probe did not finish")
            except RayClusterError:
                run.kill()
                run.communicate()
                raise
            time.sleep(0.1)
        out, err = run.communicate()
        lines = [line for line in out.splitlines() if line.startswith("NODES ")]
        if run.returncode != 0 or not lines:
            raise self._fail(f"a driver could not list the nodes (exit {run.returncode}):\n{err[-3000:]}")
        self.nodes = json.loads(lines[-1][len("NODES "):])
        by_name = {n["NodeName"]: n for n in self.nodes}
        missing = [node.role for node in (self.head, self.worker) if node.name not in by_name]
        if missing:
            raise self._fail(f"not alive after {self.start_timeout:.0f} s: {', '.join(missing)} "
                             f"(alive: {sorted(by_name)})")
        for node in (self.head, self.worker):
            node.node_id = by_name[node.name]["NodeID"]

    def _wait_for_dashboard(self) -> None:
        request = urllib.request.Request(f"{self.dashboard_url}/api/version")
        if self.auth:
            request.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise self._fail(f"the dashboard at {self.dashboard_url} did not answer ({last})")

    # -- processes -----------------------------------------------------------------------------------------
    def node_pids(self, node: Node) -> set[int]:
        """Live processes of a node: in its leader's session, below its leader, or with its marker."""
        if node.proc is None:
            return set()
        leader, needle = node.proc.pid, f"{MARKER}={node.marker}\0".encode()
        table: dict[int, tuple[int, int, str]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(entry)) is not None:
                table[int(entry)] = stat
        found = {pid for pid, (_, sid, state) in table.items() if sid == leader and state not in "ZX"}
        frontier = {leader}
        while frontier:
            frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - found
            found |= {pid for pid in frontier if table[pid][2] not in "ZX"}
        found |= {pid for pid, (_, _, state) in table.items()
                  if state not in "ZX" and pid not in found and _environ_has(str(pid), needle)}
        if node.proc.poll() is None:
            found.add(leader)
        else:
            found.discard(leader)
        return found

    @property
    def pids(self) -> set[int]:
        """Every live process of the cluster."""
        return {pid for node in (self.head, self.worker) if node for pid in self.node_pids(node)}

    @property
    def killed(self) -> list[int]:
        """Processes that outlived SIGTERM and `stop_timeout` and were killed (empty after a clean stop)."""
        return [pid for node in (self.head, self.worker) if node for pid in node.killed]

    # -- stop ----------------------------------------------------------------------------------------------
    def _stop_node(self, node: Node | None) -> None:
        if node is None or node.proc is None:
            return
        begin = time.monotonic()
        if node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)  # the leader only: it stops its node's processes
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            node.proc.poll()  # reaps the leader
            if not self.node_pids(node):
                break
            time.sleep(0.05)
        else:
            for _ in range(3):  # stragglers: only processes of this node, by pid
                left = self.node_pids(node)
                if not left:
                    break
                node.killed += sorted(left - set(node.killed))
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=5)
                time.sleep(0.5)
        self.timings[f"stop_{node.role}_s"] = time.monotonic() - begin

    def stop(self) -> None:
        """Worker first, then head; then keep their Ray logs under tmp_path and free the temp dir and ports."""
        try:
            self._stop_node(self.worker)
            self._stop_node(self.head)
        finally:
            for node in (self.head, self.worker):
                if node and node.logs_dir.is_dir():
                    with contextlib.suppress(OSError, shutil.Error):
                        shutil.copytree(node.logs_dir, self.tmp_path / f"{node.role}-ray-logs", dirs_exist_ok=True,
                                        ignore_dangling_symlinks=True)
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
            if self._claim is not None:
                with contextlib.suppress(OSError):
                    self._claim.unlink()
                self._claim = None


__all__ = ["LocalRayCluster", "Node", "RayClusterError"]
