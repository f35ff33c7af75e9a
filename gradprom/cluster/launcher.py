"""`gradprom cluster …`: Ray's own cluster launcher and Jobs API, wrapped, never re-implemented.

`up`/`down`/`status` run Ray's CLI (`ray up`, `ray down`, `ray exec … ray status`) on a rendered copy of a
cluster config (the user's checkout and auth token filled in); `submit`/`logs`/`stop` use Ray's
`JobSubmissionClient`. With a cluster config, `submit` reaches the Jobs API through the launcher's SSH
tunnel (`ray dashboard CONFIG`), since no config opens the dashboard port to the internet.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` CLI of this very interpreter
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
TUNNEL_TIMEOUT_S = 60
POLL_S = 2.0


class JobFailed(GradpromError):
    """A submitted job ended FAILED or STOPPED (exit code 1: not a usage error)."""

    exit_code = 1


def source_dir(given: str = "") -> Path:
    """The gradprom checkout shipped to the nodes: `given`, or the one this gradprom runs from."""
    import gradprom

    folder = Path(given).expanduser().resolve() if given else Path(gradprom.__file__).resolve().parent.parent
    if not (folder / "pyproject.toml").is_file() or not (folder / "gradprom").is_dir():
        raise GradpromError(f"{folder} is not a gradprom checkout (no pyproject.toml and gradprom/); the nodes install "
                            "gradprom from one: pass --source PATH to your checkout")
    return folder


def token_file(create: bool) -> Path:
    """The Ray auth token the cluster and its clients share: $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; made
    (32 random bytes, mode 600) when `create` and absent."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if not path.is_file() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path


def rendered_config(config: str, source: str = "", create_token: bool = False) -> tuple[dict[str, Any], Path]:
    """Render and validate `config` (a shipped template name or a YAML path) with Ray's own validation, and
    write the rendered copy Ray's CLI will read under the gradprom cache; returns (config, its path)."""
    import yaml

    from gradprom.cache import default_cache_dir
    from gradprom.cluster.templates import LAUNCHER, kind_of, render, validate

    config_dict = render(config, source_dir(source), token_file(create_token))
    if kind_of(config_dict) != LAUNCHER:
        raise GradpromError(f"{config} is a KubeRay manifest, which kubectl applies (kubectl apply -f FILE after "
                            "gradprom cluster templates --write kuberay-rayjob); up/down/status take launcher configs")
    validate(config_dict)
    path = Path(default_cache_dir()) / "clusters" / f"{config_dict.get('cluster_name', 'gradprom')}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict, sort_keys=False))
    return config_dict, path


def ray_command(args: list[str], dry_run: bool, echo: Callable[[str], None]) -> int:
    """Run Ray's CLI with `args` (its output and prompts are Ray's own); with `dry_run` only print it."""
    shown = "ray " + shlex.join(args)
    echo(f"{'would run' if dry_run else 'running'}: {shown}")
    if dry_run:
        return 0
    done = subprocess.run([*RAY, *args], check=False)
    if done.returncode:
        raise GradpromError(f"`{shown}` failed with exit code {done.returncode} (its output is above)")
    return 0


# --- jobs -----------------------------------------------------------------------------------------------


def job_entrypoint(command: list[str], names: Collection[str]) -> str:
    """The job's shell command: this gradprom command, run by the nodes' Python; `names` are the gradprom
    commands (what may follow `gradprom`), which the CLI passes in."""
    if not command or command[0] not in names:
        raise GradpromError(f"after `--` comes the gradprom command the job runs, e.g. `-- search --dataset camus`; "
                            f"got {shlex.join(command) or 'nothing'} (commands: {', '.join(sorted(names))})")
    return "python -m gradprom " + shlex.join(command)


SUBMIT_OPTIONS = ("--address", "--source", "--wait", "--dry-run")


def submit_target(args: list[str], address: str, names: Collection[str]) -> tuple[str, list[str]]:
    """Split what follows `cluster submit`'s options into (cluster config or '', the gradprom command).

    The command may be written with its program name (`-- gradprom search …`): a leading `gradprom` is
    dropped. The first word is a config only if it names a shipped template or a file; anything else that
    is not a gradprom command (one of `names`) is refused here, saying which of the two it was taken for."""
    from gradprom.cluster.templates import DOCKER, TEMPLATES

    rest = list(args)
    shipped = ", ".join(n for n, t in TEMPLATES.items() if t.kind != DOCKER)
    if rest and rest[0].startswith("-"):
        raise GradpromError(f"`gradprom cluster submit` has no option {rest[0]} (its options: "
                            f"{', '.join(SUBMIT_OPTIONS)}); the job's command comes after `--`, e.g. "
                            "`gradprom cluster submit --address http://HEAD:8265 -- search …`")
    config = ""
    if rest and rest[0] == "gradprom":
        rest.pop(0)
    elif rest and rest[0] not in names:
        first = rest[0]
        if first in TEMPLATES or Path(first).expanduser().is_file():
            config = rest.pop(0)
            if rest and rest[0] == "gradprom":
                rest.pop(0)
        elif address:
            raise GradpromError(f"`{first}` is not a gradprom command (commands: {', '.join(sorted(names))}); "
                                "after `--` comes the command the job runs, e.g. `-- search --dataset camus`")
        else:
            raise GradpromError(f"`{first}` is neither a cluster config (no such file, and no shipped template of "
                                f"that name: {shipped}) nor a gradprom command ({', '.join(sorted(names))}); "
                                "write `gradprom cluster submit CONFIG -- search …` or `--address http://HEAD:8265 "
                                "-- search …`")
    return config, rest


def job_runtime_env() -> dict[str, Any]:
    """The project shipped with the job: the gradprom package as a py_module (on the entrypoint's PYTHONPATH
    and every trial's), plus the plugin modules the user registered."""
    import gradprom
    from gradprom.plugins import runtime_env_vars

    env: dict[str, Any] = {"py_modules": [str(Path(gradprom.__file__).resolve().parent)],
                           "excludes": ["__pycache__", "*.pyc"]}
    if plugins := runtime_env_vars():
        env["env_vars"] = plugins
    return env


@contextmanager
def _explicit_address() -> Iterator[None]:
    """Ray's Jobs client prefers $RAY_API_SERVER_ADDRESS/$RAY_ADDRESS over the address it is given: hide them."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def check_jobs_address(address: str) -> str:
    """The Jobs API is the dashboard's HTTP server (http://HEAD:8265): a GCS address (HEAD:6379) or a Ray Client
    one (ray://) is refused at once, not after Ray's retries."""
    if not address.startswith(("http://", "https://")):
        raise GradpromError(f"--address {address} is not a Jobs API address: jobs go to the dashboard's HTTP server, "
                            "http://HEAD:8265 (HEAD:6379 is the GCS address that `gradprom search --address` takes)")
    return address


def jobs_client(address: str) -> Any:
    """Ray's JobSubmissionClient for `address`, with auth and connection failures as one line."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    check_jobs_address(address)
    try:
        with _explicit_address():
            return JobSubmissionClient(address)
    except AuthenticationError as exc:
        reason = str(getattr(exc, "message", exc)).splitlines()[0]
        raise GradpromError(f"the Ray cluster at {address} refused the request ({reason}); it has token "
                            "authentication on: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's token "
                            "file (or RAY_AUTH_TOKEN)") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise GradpromError(f"cannot reach the Ray Jobs API at {address} ({str(exc).splitlines()[0]}); check "
                            "--address (http://HEAD:8265), or pass the cluster config to tunnel to it") from None


def submit_job(address: str, entrypoint: str) -> str:
    """Submit `entrypoint` (from `job_entrypoint`) as a Ray Job on the cluster at `address`; returns the job id."""
    return jobs_client(address).submit_job(entrypoint=entrypoint, runtime_env=job_runtime_env())


def follow_job(address: str, job_id: str, echo: Callable[[str], None]) -> str:
    """Print the job's log as it grows until the job ends; returns its final status."""
    client = jobs_client(address)
    printed = 0
    while True:
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            echo(logs[printed:].rstrip("\n"))
            printed = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(POLL_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard_tunnel(rendered: Path) -> Iterator[str]:
    """`ray dashboard CONFIG` (the launcher's SSH tunnel to the head's dashboard) for the block; yields the local
    Jobs API address. The tunnel runs in its own session, so stopping it stops its ssh too."""
    port = _free_port()
    tunnel = subprocess.Popen([*RAY, "dashboard", "--port", str(port), str(rendered)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TUNNEL_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)  # noqa: S310 - our own tunnel
                break
            except urllib.error.HTTPError:
                break  # the dashboard answered (e.g. 401 under token auth): the tunnel is up
            except OSError:
                if tunnel.poll() is not None or time.monotonic() > deadline:
                    raise GradpromError(f"could not open the SSH tunnel to the head's dashboard (`ray dashboard "
                                        f"{rendered}`); is the cluster up? (gradprom cluster status CONFIG)") from None
                time.sleep(1)
        yield address
    finally:
        if tunnel.poll() is None:
            os.killpg(tunnel.pid, signal.SIGTERM)
            tunnel.wait(timeout=10)
