"""Reaching the Ray cluster, and what its nodes offer a search, checked before trials start.

`--address` is checked first, with bounded waits: parsed, its host resolved, its port connected to, then
Ray's own handshake run in a short-lived child process with a deadline. Ray's driver connection retries
for many minutes and prints C++ warnings on the way (an unreachable address never fails by itself), so
every way of not reaching the cluster ends in one line, exit 2, saying what was tried.

On a local runtime a trial that fits no node would wait forever, so that is one line and exit 2. On a
cluster the autoscaler may still add the node, so the search says it waits instead of failing. Real
datasets are read on every node that can host a trial (a Ray task pinned to each), so a node without the
data is named before any trial lands there and fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from gradprom.errors import GradpromError
from gradprom.results.experiment import redact  # credentials in an address are never echoed

PROBE_TIMEOUT_S = 300  # reading one sample per split on a node (first import of torch included)
TCP_TIMEOUT_S = 5.0  # name lookup, then TCP connect, each
RAY_TIMEOUT_S = 30.0  # Ray's handshake (a child process: import ray, ray.init, ray.shutdown); env overrides it
CLIENT_PORT = 10001  # Ray Client's default port (ray://HEAD)
HOW_TO_REACH = ("reach a cluster at its head's GCS address, HEAD:6379 (as `ray start --head` prints it), or at "
                "ray://HEAD:10001 (Ray Client), or submit the search to it with `gradprom cluster submit`")
_HOST = re.compile(r"[A-Za-z0-9_.-]+")
#: the child's code: Ray's own connection (auth, versions, the GCS answering), then a one-line JSON verdict
_RAY_PROBE = """
import json, logging, sys
try:
    import ray
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)
    ray.shutdown()
    verdict = {"ok": True}
except BaseException as exc:
    verdict = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
print("\\n@gradprom-probe " + json.dumps(verdict), flush=True)
"""


@dataclass(frozen=True)
class RayAddress:
    """A parsed --address: where Ray is reached (`host`, `port`) and how (GCS, or Ray Client for ray://)."""

    given: str  # as typed, credentials masked (for messages)
    host: str
    port: int
    client: bool
    userinfo: str = field(default="", repr=False)  # ray://USER:TOKEN@HOST: passed on to Ray, never shown

    @property
    def for_ray(self) -> str:
        """The address as `ray.init` takes it (ray:// with its port filled in)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.userinfo}@" if self.userinfo else ""
        return f"ray://{user}{host}:{self.port}" if self.client else f"{host}:{self.port}"

    @property
    def what(self) -> str:
        kind = "Ray Client" if self.client else "GCS"
        return f"host {self.host}, port {self.port} ({kind})"


def parse_address(address: str) -> RayAddress | None:
    """HOST:PORT (the head's GCS), ray://HOST[:PORT] (Ray Client, port 10001 by default) or [IPv6]:PORT; None
    for 'auto' (Ray finds the cluster this machine belongs to) and other MODULE://… schemes, which only Ray's
    handshake can check. Anything else that is not an address is one line."""
    text = address.strip()
    if text == "auto":
        return None

    def bad(why: str) -> GradpromError:
        return GradpromError(f"--address {redact(address)!r} is not a Ray address: {why}; {HOW_TO_REACH}")

    if text.startswith(("http://", "https://")):
        raise bad("http:// is the Jobs API, which `gradprom cluster submit --address` takes; a search connects to "
                  "the GCS (HEAD:6379) or Ray Client (ray://HEAD:10001)")
    client = text.startswith("ray://")
    rest = text[len("ray://"):].rstrip("/") if client else text
    if "://" in rest:  # another client module's scheme (ray.init imports MODULE for MODULE://…): Ray's to check
        return None
    userinfo, _, rest = rest.rpartition("@") if client else ("", "", rest)
    if rest.startswith("["):  # [IPv6]:PORT
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise bad("an IPv6 host goes in brackets, [ADDR]:PORT")
        port_text = tail[1:] if tail else ""
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
        if ":" in host:
            raise bad("more than one ':' (write an IPv6 host in brackets, [ADDR]:PORT)")
        if not host or not _HOST.fullmatch(host):
            raise bad(f"the host {host!r} is not a host name or IP address")
        if re.fullmatch(r"[0-9.]+", host):  # looks like an IPv4 address: must be one (no name lookup for it)
            try:
                socket.inet_aton(host)
            except OSError:
                raise bad(f"{host!r} is not an IPv4 address (four numbers 0-255)") from None
    if not port_text and client:
        port_text = str(CLIENT_PORT)
    if not port_text:
        raise bad("no port (the head's GCS listens on 6379 unless `ray start --head --port` said otherwise)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad(f"the port {port_text!r} is not a number from 1 to 65535")
    return RayAddress(redact(address), host, int(port_text), client, userinfo)


def _lookup(host: str, port: int) -> list[tuple]:
    """getaddrinfo with a deadline (the resolver's own timeouts can add up to minutes)."""
    found: list[Any] = []

    def run() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(TCP_TIMEOUT_S)
    if not found:
        raise TimeoutError(f"the name lookup took over {TCP_TIMEOUT_S:g} s")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def check_tcp(where: RayAddress) -> None:
    """Resolve the host and open (then close) a TCP connection to the port, each within TCP_TIMEOUT_S."""
    fail = f"--address {where.given}: tried {where.what}"
    try:
        infos = _lookup(where.host, where.port)
    except socket.gaierror as exc:
        raise GradpromError(f"{fail}: the host name does not resolve ({exc.strerror}); {HOW_TO_REACH}") from None
    except (TimeoutError, OSError) as exc:
        raise GradpromError(f"{fail}: the host name could not be looked up ({exc}); {HOW_TO_REACH}") from None
    reason = ""
    for family, kind, proto, _, sockaddr in infos[:4]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(TCP_TIMEOUT_S)
                sock.connect(sockaddr)
            return
        except ConnectionRefusedError:
            reason = "connection refused: nothing listens on that port; is the cluster up, and is it its port?"
        except TimeoutError:
            reason = f"no answer within {TCP_TIMEOUT_S:g} s (a firewall, or the wrong host?)"
        except OSError as exc:
            reason = exc.strerror or str(exc)
    ip = str(infos[0][4][0])
    raise GradpromError(f"{fail}{f' ({ip})' if ip != where.host else ''}: {reason}; {HOW_TO_REACH}")


def _ray_timeout() -> float:
    text = os.environ.get("GRADPROM_CONNECT_TIMEOUT_S", "")
    try:
        return float(text) if text else RAY_TIMEOUT_S
    except ValueError:
        raise GradpromError(f"GRADPROM_CONNECT_TIMEOUT_S must be a number of seconds, got {text!r}") from None


def check_ray(address: str, fail: str) -> None:
    """Ray's handshake with the cluster at `address`, in a child process killed at the deadline: a port that
    accepts but does not speak Ray, a refused token or a Ray version mismatch ends here, in one line starting
    with `fail`, and Ray's warnings stay in the child's captured output. The child is a short-lived driver
    (public `ray.init`), so the cluster sees one extra finished job."""
    timeout = _ray_timeout()
    child = subprocess.Popen([sys.executable, "-c", _RAY_PROBE, address], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                             env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        output, _ = child.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the child's own session: it and anything it started
        output, _ = child.communicate()
        timed_out = True
    verdict: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("@gradprom-probe "):
            verdict = json.loads(line.split(" ", 1)[1])
    if verdict.get("ok"):
        return
    message = " ".join(str(verdict.get("message", "")).split())[:300]
    refused = next((" ".join(ln.split())[-160:] for ln in output.splitlines() if "Unauthenticated" in ln
                    or "InvalidAuthToken" in ln), "")  # Ray's C++ log of a refused token (Python says less)
    if verdict.get("type") == "AuthenticationError" or "authenticat" in message.lower() or refused:
        raise GradpromError(f"{fail}: the cluster refused the connection ({refused or message}); it has token "
                            "authentication on: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's "
                            "token file (or RAY_AUTH_TOKEN)")
    if timed_out:
        raise GradpromError(f"{fail}: the port accepts connections but no Ray cluster answered within {timeout:g} s "
                            "(is it the head's GCS port, or for ray:// its Ray Client port? GRADPROM_CONNECT_TIMEOUT_S "
                            f"waits longer); {HOW_TO_REACH}")
    if not verdict:  # the child died without a verdict (killed, or crashed inside Ray)
        last = next((" ".join(ln.split()) for ln in reversed(output.splitlines()) if ln.strip()), "no output")
        raise GradpromError(f"{fail}: Ray's connection attempt died (exit code {child.returncode}; its last line: "
                            f"{last[:300]}); {HOW_TO_REACH}")
    raise GradpromError(f"{fail}: Ray could not connect ({verdict.get('type')}: {message}); {HOW_TO_REACH}")


def check_address(address: str) -> str:
    """Check that a Ray cluster answers at `address` before anything else runs; returns the address to pass to
    `ray.init` (ray:// with its default port filled in). Every failure is one line (GradpromError)."""
    where = parse_address(address)
    if where is None:
        what = "the cluster this machine belongs to" if address.strip() == "auto" else "Ray's client for it"
        check_ray(address.strip(), f"--address {redact(address)}: tried {what}")
        return address.strip()
    check_tcp(where)
    check_ray(where.for_ray, f"--address {where.given}: tried {where.what}")
    return where.for_ray


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

    from gradprom.trainables.build import read_samples
    from gradprom.trainables.config import TrialConfig

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
