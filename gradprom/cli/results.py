"""The verbs that read an experiment's results: `pareto` (the front, its plot and the gate telemetry),
`aggregate` (many experiments as one table), `report` (one HTML page) and `rerun` (one trial again).

A new verb is one more `@app.command()` function here: the app picks up every command of this module.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from gradprom.cli.options import console, split_names
from gradprom.errors import GradpromError, unknown_name

app = typer.Typer()


@app.command()
def pareto(
    experiment_at: str = typer.Argument(..., metavar="EXPERIMENT", help="An experiment folder OUT/NAME, or its "
                                        "storage URI (s3://…, gs://…, file://…)."),
    plot: Path | None = typer.Option(None, help="Write the scatter of the first two objectives with the front "
                                                "drawn to this PNG."),
    on: str = typer.Option("val", help="Front on the validation (val, what the search optimised) or test split."),
    objectives: str = typer.Option("", help="Result columns to rank on, NAME or NAME:max/NAME:min (default: the "
                                            "search's own --objectives)."),
    by: str = typer.Option("", help="Also a front per strategy or per dataset, with its hypervolume and knee."),
    ref: str = typer.Option("", help="Hypervolume reference point, one value per objective (default: PSNR 10 dB, "
                                     "SSIM and task metrics 0, fixed so figures compare across runs)."),
    telemetry: str = typer.Option("", help="Trial ids (comma-separated, or 'front') whose gate telemetry to plot: "
                                           "cosine per step, promoted fraction per epoch (OUT/NAME/telemetry.png)."),
) -> None:
    """Print the Pareto front of an experiment (non-dominated sorting on its objectives: front, ranks,
    hypervolume, knee) and optionally plot it."""
    from gradprom.analysis.pareto import (
        BY,
        front_rows,
        fronts_by,
        hypervolume,
        knee,
        pareto_ranks,
        parse_objectives,
        reference_point,
    )
    from gradprom.analysis.plots import plot_front
    from gradprom.analysis.tables import front_table
    from gradprom.metrics import task_metric_name
    from gradprom.results.experiment import read_manifest
    from gradprom.results.parquet import TRIALS, read_rows, writable_file
    from gradprom.results.storage import is_uri, local_folder, publish

    if on not in ("val", "test"):
        raise GradpromError(f"--on must be val or test, got '{on}'")
    if by not in ("", *BY):
        raise unknown_name("grouping", by, BY, option="--by")
    if plot is not None:
        writable_file(plot, "--plot")
        if plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise GradpromError(f"--plot must name a .png, .pdf or .svg file, got {plot}")
    experiment = local_folder(experiment_at)
    rows = read_rows(experiment / TRIALS)
    searched = ((read_manifest(experiment) or {}).get("request") or {}).get("objectives") or "psnr,task_metric"
    pairs = parse_objectives(objectives or searched)
    if on == "test":
        for r in rows:
            r["test_task_metric"] = r.get(f"test_{task_metric_name(r.get('task', 'classification'))}")
        pairs = tuple((f"test_{n}", d) for n, d in pairs)
    known = {k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, _ in pairs:
        if name not in known:
            raise unknown_name("objective (numeric result column)", name, known, option="--objectives")
    point = reference_point(pairs, [float(v) for v in split_names(ref)] if ref else [])
    for r, rank in zip(rows, pareto_ranks(rows, pairs), strict=True):
        r["pareto_rank"] = rank
    front = front_rows(rows, pairs)
    if telemetry:  # the trials named, checked before anything is printed
        wanted = [r["trial_id"] for r in front] if telemetry == "front" else split_names(telemetry)
        chosen = [next((r for r in rows if r["trial_id"] == tid), None) for tid in wanted]
        missing = [tid for tid, r in zip(wanted, chosen, strict=True) if r is None]
        if missing:
            raise GradpromError(f"--telemetry: no trial '{missing[0]}' in {experiment.name}; its trials: "
                                f"{', '.join(r['trial_id'] for r in rows)} (or 'front')")
    best = knee(front, pairs)
    console.print(front_table(front, f"Pareto front ({on}): {len(front)} of {len(rows)} trials", pairs))
    ranked = sorted({r["pareto_rank"] for r in rows if r["pareto_rank"] is not None})
    console.print(f"hypervolume {hypervolume(rows, pairs, point):.4g} (reference {', '.join(f'{v:g}' for v in point)})"
                  f" · knee: {best['trial_id'] if best else '–'} · ranks: " +
                  ", ".join(f"{k}: {sum(r['pareto_rank'] == k for r in rows)}" for k in ranked), highlight=False)
    if by:
        groups = fronts_by(rows, by, pairs, point)
        table = Table(title=f"fronts by {by}", title_justify="left")
        columns = ["dataset", "task", *(["strategy"] if by == "strategy" else []), "trials", "eligible",
                   "front_size", "hypervolume", "knee_trial"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("dataset", "task", "strategy", "knee_trial") else "right")
        for g in groups:
            table.add_row(*(f"{g[c]:.4g}" if isinstance(g[c], float) else str(g[c]) for c in columns))
        console.print(table)
        if by == "strategy" and (experiment / "protocol.parquet").is_file():  # a front protocol: fronts per seed
            from gradprom.analysis.fronts import show, written_verdicts

            hv = [r for r in read_rows(experiment / "protocol.parquet") if r["kind"] == "hv_summary"]
            if hv:
                show(hv, written_verdicts(experiment / "protocol.md"), console)
    if plot is not None:
        console.print(f"plot written to {plot_front(rows, plot, pairs, title=experiment.name)}")
    if telemetry:
        from gradprom.analysis.plots import plot_telemetry
        from gradprom.results.parquet import EPOCHS

        path = plot_telemetry(read_rows(experiment / EPOCHS), chosen, experiment / "telemetry.png",
                              title=f"gate telemetry · {experiment.name}")
        publish(experiment, path.name)
        console.print(f"telemetry plot written to {path}" + (f" and {experiment_at}/{path.name}"
                                                              if is_uri(experiment_at) else ""))


@app.command()
def aggregate(
    experiments: list[str] = typer.Argument(..., metavar="EXPERIMENT...", help="Experiment folders (OUT/NAME) or "
                                            "storage URIs."),
    out: Path = typer.Option(..., "--out", help="The merged table to write (.parquet)."),
) -> None:
    """Merge experiments into one table (tagged experiment, dataset, space, strategy), reading every older
    results schema as today's; columns whose types cannot be merged are refused in one line."""
    from gradprom.results.aggregate import write_aggregate
    from gradprom.results.parquet import writable_file

    path, table = write_aggregate(list(experiments), writable_file(out, "--out", suffix=".parquet"))
    names = sorted(set(table.column("experiment").to_pylist()))
    console.print(f"{table.num_rows} trials of {len(names)} experiment(s) ({', '.join(names)}) written to {path}",
                  highlight=False)


@app.command()
def report(
    experiments: list[str] = typer.Argument(..., metavar="EXPERIMENT...", help="Experiment folders (OUT/NAME) or "
                                            "storage URIs, e.g. results/*."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for index.html and its PNGs."),
    objectives: str = typer.Option("", help="Objectives of the fronts (default: the first experiment's own)."),
    ref: str = typer.Option("", help="Hypervolume reference point, one value per objective."),
    qualitative: bool = typer.Option(True, help="Degraded / enhanced / clean images with Grad-CAM for the best "
                                                "trials (reads their checkpoints)."),
) -> None:
    """One self-contained HTML page (no network needed): fronts coloured by strategy with hypervolume, sensitivity
    to λ and τ, gate telemetry, protocol tables and verdicts, Grad-CAM of the best trials, the front table."""
    from gradprom.analysis.report import build_report
    from gradprom.results.parquet import writable_folder

    writable_folder(out, "--out")
    with console.status("building the report…") as status:
        page = build_report(list(experiments), out, objectives=objectives,
                            ref=[float(v) for v in split_names(ref)] if ref else None, qualitative=qualitative,
                            step=lambda text: status.update(f"report: {text}…"))
    console.print(f"report written to {page} (open it in a browser; the PNGs lie beside it)", highlight=False)


@app.command()
def rerun(
    experiment: str = typer.Argument(..., help="The experiment folder OUT/NAME (or its storage URI)."),
    trial_id: str = typer.Argument(..., help="The trial to retrain (its id, or a unique end of it as tables show)."),
    out: Path | None = typer.Option(None, help="Also write the rerun's figures to DIR/rerun.parquet."),
) -> None:
    """Retrain one trial from its recorded config in a plain loop (no Ray) and print the original and the new
    figures side by side."""
    from gradprom.analysis.rerun import comparison
    from gradprom.analysis.rerun import rerun as run_again
    from gradprom.results.parquet import writable_folder

    if out is not None:  # before the retraining, not after it
        writable_folder(out, "--out")

    def progress(metrics: dict, _checkpoint: str | None) -> None:
        console.print(f"epoch {metrics['epoch']}: psnr {metrics['psnr']:.3f}", highlight=False)

    original, new = run_again(experiment, trial_id, out, progress)
    table = Table(title=f"trial {original['trial_id']}: original vs rerun", title_justify="left")
    for col in ("figure", "original", "rerun", "difference"):
        table.add_column(col, justify="left" if col in ("figure", "difference") else "right")
    rows = comparison(original, new)
    for key, a, b, diff in rows:
        table.add_row(key, *(f"{v:.6g}" if isinstance(v, float) else str(v) for v in (a, b)), diff)
    console.print(table)
    same = all(diff == "same" for key, _, _, diff in rows if key.startswith("test_"))
    console.print("[green]the test figures are identical[/green]" if same else
                  "[yellow]the test figures differ (see the provenance rows: code, data, device)[/yellow]")
