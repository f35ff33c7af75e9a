"""The `gradprom` command line: thin; parses, validates, calls one function per command.

One module per group of verbs: `run` (search, protocol, train), `results` (pareto, aggregate, report, rerun),
`catalog` (spaces, protocols, strategies, pipelines, models, settings), `datasets` and `cluster`; `options` defines each
shared option once. Bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from gradprom.cli import catalog, cluster, datasets, results, run
from gradprom.errors import GradpromError

try:  # typer ≥ 0.20 vendors its own click; its exceptions share this public base
    from typer.exceptions import TyperException as ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Task-driven medical image enhancement experiments: gradient strategies searched on Ray.")
for verbs in (run.app, results.app, catalog.app):  # their commands sit right under `gradprom`
    app.add_typer(verbs)
app.add_typer(datasets.app, name="datasets")
app.add_typer(cluster.app, name="cluster")


def command_names() -> set[str]:
    """The gradprom commands and command groups (what may follow `gradprom`)."""
    return set(typer.main.get_command(app).commands)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one line and exit code 2."""
    from gradprom.plugins import load_plugins

    given, process_argv = argv is not None, sys.argv
    if given:  # called with its arguments (a notebook, a test): that is the command line the manifest records
        sys.argv = ["gradprom", *argv]
    try:
        load_plugins()
        app(args=argv, prog_name="gradprom", standalone_mode=False)  # `gradprom …` however it was started
    except GradpromError as exc:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 2)
    except ClickException as exc:  # bad option, missing value, wrong type: one line, not a usage box
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group named alone: Typer has printed its help already
            return 2
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path if ctx is not None else 'gradprom'} --help"  # the (sub)command that refused
        message = " ".join(exc.format_message().split())
        Console(stderr=True).print(f"[bold red]error:[/bold red] {message} (see `{where}`)", highlight=False,
                                   soft_wrap=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a search (which says more itself)
        Console(stderr=True).print("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    finally:
        sys.argv = process_argv
    return 0
