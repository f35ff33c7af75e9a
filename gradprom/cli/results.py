"""The verbs that read an experiment's results: `pareto` (the front, its plot and the gate telemetry).

A new verb is one more `@app.command()` function here: the app picks up every command of this module.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gradprom.cli.options import console, split_names
from gradprom.errors import GradpromError

app = typer.Typer()


@app.command()
def pareto(
    experiment_at: str = typer.Argument(..., metavar="EXPERIMENT", help="An experiment folder OUT/NAME, or its "
                                        "storage URI (s3://…, gs://…, file://…)."),
    plot: Path | None = typer.Option(None, help="Write the PSNR-vs-task scatter with the front drawn to this PNG."),
    on: str = typer.Option("val", help="Front on the validation (val, what the search optimised) or test split."),
    telemetry: str = typer.Option("", help="Trial ids (comma-separated, or 'front') whose gate telemetry to plot: "
                                           "cosine per step, promoted fraction per epoch (OUT/NAME/telemetry.png)."),
) -> None:
    """Print the Pareto front of an experiment (PSNR vs task metric) and optionally plot it."""
    from gradprom.metrics import task_metric_name
    from gradprom.orchestrator.pareto import front_rows
    from gradprom.orchestrator.plots import plot_front
    from gradprom.orchestrator.results import TRIALS, read_rows
    from gradprom.orchestrator.storage import is_uri, local_folder, publish
    from gradprom.orchestrator.tables import front_table

    if on not in ("val", "test"):
        raise GradpromError(f"--on must be val or test, got '{on}'")
    experiment = local_folder(experiment_at)
    rows = read_rows(experiment / TRIALS)
    if on == "test":
        for r in rows:
            r["test_task_metric"] = r.get(f"test_{task_metric_name(r.get('task', 'classification'))}")
    objectives = ("psnr", "task_metric") if on == "val" else ("test_psnr", "test_task_metric")
    front = front_rows(rows, objectives)
    console.print(front_table(front, f"Pareto front ({on}): {len(front)} of {len(rows)} trials", objectives))
    if plot is not None:
        console.print(f"plot written to {plot_front(rows, plot, objectives, title=experiment.name)}")
    if telemetry:
        from gradprom.orchestrator.plots import plot_telemetry
        from gradprom.orchestrator.results import EPOCHS

        wanted = [r["trial_id"] for r in front] if telemetry == "front" else split_names(telemetry)
        chosen = [next((r for r in rows if r["trial_id"] == tid), None) for tid in wanted]
        missing = [tid for tid, r in zip(wanted, chosen, strict=True) if r is None]
        if missing:
            raise GradpromError(f"no trial '{missing[0]}' in {experiment.name}; its trials: "
                                f"{', '.join(r['trial_id'] for r in rows)}")
        path = plot_telemetry(read_rows(experiment / EPOCHS), chosen, experiment / "telemetry.png",
                              title=f"gate telemetry · {experiment.name}")
        publish(experiment, path.name)
        console.print(f"telemetry plot written to {path}" + (f" and {experiment_at}/{path.name}"
                                                              if is_uri(experiment_at) else ""))
