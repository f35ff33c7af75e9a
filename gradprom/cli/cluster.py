"""`gradprom cluster …`: launch Ray clusters with Ray's launcher (up, down, status), run gradprom commands on
them as Ray Jobs (submit, logs, stop), and the shipped configs (templates)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gradprom.cli.options import console, echo
from gradprom.errors import GradpromError

app = typer.Typer(help="Ray clusters: launch them (Ray's cluster launcher), submit searches as Ray Jobs.",
                  no_args_is_help=True)

CONFIG_HELP = "Cluster config: a shipped template name (see `gradprom cluster templates`) or your YAML file."
CONFIG = typer.Argument(..., help=CONFIG_HELP)
CONFIG_OR_ADDRESS = typer.Argument("", help=CONFIG_HELP + " Or --address.")
SOURCE = typer.Option("", help="The gradprom checkout the nodes install; default the one this gradprom runs from.")
JOBS_ADDRESS = typer.Option("", help="The cluster's Jobs API, http://HEAD:8265.")
JOB = typer.Argument(..., help="Job id (from `submit`).")


def _launcher_command(verb: list[str], config: str, source: str, dry_run: bool, tail: list[str] = ()) -> None:
    from gradprom.cluster.launcher import ray_command, rendered_config

    _, path = rendered_config(config, source, create_token=not dry_run and verb[0] == "up")
    if dry_run:
        echo(f"rendered and validated by Ray: {path}")
        echo(path.read_text())
    ray_command([*verb, str(path), *tail], dry_run, echo)


@app.command("up")
def cluster_up(config: str = CONFIG, source: str = SOURCE,
               dry_run: bool = typer.Option(False, "--dry-run", help="Render, validate and print; start nothing.")
               ) -> None:
    """Start or update a cluster with Ray's launcher (`ray up`), gradprom installed on every node."""
    _launcher_command(["up", "-y"], config, source, dry_run)


@app.command("down")
def cluster_down(config: str = CONFIG, source: str = SOURCE,
                 dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run.")) -> None:
    """Tear a cluster down (`ray down`)."""
    _launcher_command(["down", "-y"], config, source, dry_run)


@app.command("status")
def cluster_status(config: str = CONFIG, source: str = SOURCE,
                   dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run.")) -> None:
    """Nodes, resources and pending demands of a cluster (`ray status`, run on its head over SSH)."""
    _launcher_command(["exec"], config, source, dry_run,
                      ["RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token ray status"])


@app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cluster_submit(
    ctx: typer.Context,
    address: str = typer.Option("", help="The cluster's Jobs API, http://HEAD:8265 (default $RAY_ADDRESS when "
                                         "it is an http address); or give a cluster config before `--`."),
    source: str = SOURCE,
    wait: bool = typer.Option(False, help="Follow the job's log until it ends; exit 0 only if it succeeded."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job (entrypoint, runtime env); submit nothing."),
) -> None:
    """Run a gradprom command on a cluster as a Ray Job: `gradprom cluster submit [CONFIG] -- search …`.

    The gradprom package travels with the job (its runtime env), so the nodes run this very code."""
    from gradprom.cluster.launcher import (
        JobFailed,
        check_jobs_address,
        follow_job,
        job_entrypoint,
        job_runtime_env,
        submit_job,
        submit_target,
    )
    from gradprom.results.storage import is_uri

    root = ctx.find_root().command
    commands = set(root.commands)  # what may follow `gradprom`: this app's own verbs
    config, args = submit_target(list(ctx.args), address or _env_jobs_address(), commands)
    if config and address:
        raise GradpromError(f"give a cluster config ({config}) or --address, not both")
    address = address or ("" if config else _env_jobs_address())
    if not config and not address:
        raise GradpromError("where should the job run? pass --address http://HEAD:8265 or a cluster config "
                            "before `--` (e.g. gradprom cluster submit aws-gpu -- search …)")
    if address:
        check_jobs_address(address)
    entrypoint = job_entrypoint(args, commands)
    check_job_command(root, args)
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), "")
    if args[0] in ("search", "protocol") and not (is_uri(out) or Path(out).is_absolute()):
        console.print("[yellow]--out is not an absolute path or a storage URI: results land on the head node's "
                      "disk, in the job's working folder; use shared storage (s3://…, gs://…, an NFS path)[/yellow]")
    if dry_run:
        echo(f"would submit to {address or f'{config} (through `ray dashboard`)'}:\n  entrypoint: {entrypoint}\n"
             f"  runtime_env: {job_runtime_env()}")
        return

    with _job_address(address, config, source) as at:
        job_id = submit_job(at, entrypoint)
        console.print(f"submitted job [bold]{job_id}[/bold] to {at}")
        if not wait:
            where = f"--address {address}" if address else config
            console.print(f"follow it: gradprom cluster logs {job_id} {where} --follow · stop it: "
                          f"gradprom cluster stop {job_id} {where}", highlight=False)
            return
        status = follow_job(at, job_id, echo)
    if status != "SUCCEEDED":
        raise JobFailed(f"job {job_id} ended {status} (its log is above)")
    console.print(f"[green]job {job_id} succeeded[/green]")


def check_job_command(root: Any, args: list[str]) -> None:
    """The job's own command parsed by this very CLI (options, types, values) before it is submitted, and for
    search/protocol/train also checked as far as it can be without the cluster's data: names, ranges, spaces."""
    from gradprom.cli.run import CHECK_ONLY

    with root.make_context("gradprom", list(args)) as top:
        name, command, rest = root.resolve_command(top, list(args))
        with command.make_context(name, rest, parent=top, obj=CHECK_ONLY) as sub:
            if name in ("search", "protocol", "train"):
                command.invoke(sub)


def _env_jobs_address() -> str:
    """$RAY_API_SERVER_ADDRESS or $RAY_ADDRESS when it is a Jobs API (http) address, else ''."""
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith("http") else ""


def _job_address(address: str, config: str, source: str) -> Any:
    """The Jobs API address for the block: through the SSH tunnel for a cluster config, else `address` (or the
    environment's)."""
    from contextlib import nullcontext

    from gradprom.cluster.launcher import dashboard_tunnel, rendered_config

    if config:
        return dashboard_tunnel(rendered_config(config, source)[1])
    address = address or _env_jobs_address()
    if not address:
        raise GradpromError("pass --address http://HEAD:8265 (or a cluster config) to reach the job")
    return nullcontext(address)


@app.command("logs")
def cluster_logs(job: str = JOB, config: str = CONFIG_OR_ADDRESS, address: str = JOBS_ADDRESS, source: str = SOURCE,
                 follow: bool = typer.Option(False, "--follow", "-f", help="Print until the job ends.")) -> None:
    """Print a job's log."""
    from gradprom.cluster.launcher import follow_job, jobs_client

    with _job_address(address, config, source) as at:
        if follow:
            status = follow_job(at, job, echo)
            console.print(f"job {job}: {status}")
        else:
            echo(jobs_client(at).get_job_logs(job))


@app.command("stop")
def cluster_stop(job: str = JOB, config: str = CONFIG_OR_ADDRESS, address: str = JOBS_ADDRESS,
                 source: str = SOURCE) -> None:
    """Stop a running job; the trials it finished stay saved, and `search --resume` continues it."""
    from gradprom.cluster.launcher import jobs_client

    with _job_address(address, config, source) as at:
        stopped = jobs_client(at).stop_job(job)
    console.print(f"job {job}: {'stop requested' if stopped else 'was not running'}")


@app.command("templates")
def cluster_templates(
    write: str = typer.Option("", help="Write this template out to edit (see the list)."),
    dest: Path = typer.Option(Path("."), help="Folder (or file) to write it to."),
    overwrite: bool = typer.Option(False, help="Replace an existing file."),
) -> None:
    """List the shipped cluster configs, or write one out to edit."""
    from gradprom.cluster.templates import TEMPLATES, write_template

    if write:
        path = write_template(write, dest, overwrite=overwrite)
        console.print(f"wrote {path}; edit it, then: gradprom cluster up {path} --dry-run")
        return
    table = Table(title="shipped cluster configs")
    for col in ("name", "kind", "file", "what"):
        table.add_column(col)
    for name, (file, what, kind) in TEMPLATES.items():
        table.add_row(name, kind, file, what)
    console.print(table)
