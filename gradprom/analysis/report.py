"""`gradprom report EXP... --out DIR`: one self-contained HTML page (and its PNGs beside it) a researcher can
paste into a paper draft: fronts per dataset coloured by strategy with hypervolume per strategy, sensitivity to
λ and τ, gate telemetry of the front's trials, protocol tables with verdicts, degraded / enhanced / clean images
with Grad-CAM for the best trials, and the front as a table linking each trial's experiment manifest.

Nothing is fetched from the network: no scripts, no fonts, images are files in DIR.
"""

from __future__ import annotations

import html
import json
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradprom.analysis import plots
from gradprom.analysis.pareto import (
    OBJECTIVES,
    as_objectives,
    front_rows,
    fronts_by,
    knee,
    parse_objectives,
    reference_point,
)
from gradprom.analysis.stats import spread_text
from gradprom.errors import GradpromError
from gradprom.results.aggregate import aggregate
from gradprom.results.parquet import EPOCHS, read_rows
from gradprom.results.storage import local_folder

PAGE = "index.html"
#: at most this many trials get the qualitative (Grad-CAM) view, and this many test images each
QUALITATIVE_TRIALS, QUALITATIVE_IMAGES = 3, 3

STYLE = """body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:1px 4px}figcaption{font-size:.85em;color:#555;margin-bottom:1.2em}"""


def _esc(value: Any) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4g}"
    return html.escape("–" if value is None else str(value))


def table_html(rows: list[dict[str, Any]], columns: list[tuple[str, str]], row_id: str = "") -> str:
    """An HTML table of `rows` with (key, header) columns; text columns left-aligned."""
    head = "".join(f"<th class='l'>{html.escape(h)}</th>" if i < 2 else f"<th>{html.escape(h)}</th>"
                   for i, (_, h) in enumerate(columns))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_cell(r, k)}</td>" if i < 2 else f"<td>{_cell(r, k)}</td>"
                                    for i, (k, _) in enumerate(columns)) + "</tr>" for r in rows)
    return f"<table{f' id={row_id!r}' if row_id else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return value if key == "manifest" and value else _esc(value)  # the manifest link is our own HTML


def figure(path: Path, caption: str) -> str:
    return f"<figure><img src='{html.escape(path.name)}' alt='{html.escape(caption)}'>" \
           f"<figcaption>{html.escape(caption)}</figcaption></figure>"


def build_report(experiments: list[str], out: Path, objectives: str = "", ref: list[float] | None = None,
                 qualitative: bool = True, step: Callable[[str], None] = lambda _: None) -> Path:
    """Write DIR/index.html and its PNGs for `experiments` (folders or storage URIs); returns the page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = [local_folder(e) for e in experiments]
    manifests = [_manifest(f) for f in folders]
    wanted = objectives or next((m.get("request", {}).get("objectives") for m in manifests
                                 if m.get("request", {}).get("objectives")), "") or ",".join(OBJECTIVES)
    pairs = parse_objectives(wanted)
    point = reference_point(pairs, ref or [])
    step("reading the results")
    rows = aggregate(experiments).to_pylist()
    link = {Path(f).name: f"<a href='{html.escape((Path(f) / 'manifest.json').as_uri())}'>manifest</a>"
            for f in folders}
    for r in rows:
        r["manifest"] = link.get(str(r.get("experiment")), "")
        r["tau"] = r.get("threshold") if r.get("strategy") == "threshold" else None  # τ means nothing elsewhere
    named = ", ".join(f"<code>{n}</code> ({d}imised)" for n, d in pairs)
    parts = [f"<h1>gradprom report</h1><p>{len(rows)} trials from {len(folders)} experiment(s), generated "
             f"{time.strftime('%Y-%m-%d %H:%M')}. Objectives: {named}; "
             f"hypervolume reference point ({', '.join(f'{v:g}' for v in point)}), fixed so figures compare "
             "across runs.</p>", "<h2>Experiments</h2>", _experiments(folders, manifests)]

    datasets = sorted({str(r.get("dataset")) for r in rows})
    front_all: list[dict[str, Any]] = []
    for dataset in datasets:
        mine = [r for r in rows if str(r.get("dataset")) == dataset]
        step(f"{dataset}: fronts and sensitivity")
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        png = plots.plot_front(mine, out / f"front-{dataset}.png", pairs, title="Pareto front")
        parts.append(figure(png, f"{dataset}: every completed trial coloured by strategy (hollow: not its full "
                                 f"budget), the front over {', '.join(n for n, _ in pairs)} drawn black."))
        by_strategy = fronts_by(mine, "strategy", pairs, point)
        overall = fronts_by(mine, "dataset", pairs, point)
        parts.append("<h3>Hypervolume per strategy</h3>" + table_html(
            by_strategy + [{**o, "strategy": "all strategies"} for o in overall],
            [("strategy", "strategy"), ("task", "task"), ("trials", "trials"), ("eligible", "full budget"),
             ("front_size", "front size"), ("hypervolume", "hypervolume"), ("knee_trial", "knee trial")],
            row_id=f"hv-{dataset}"))
        png = plots.plot_sensitivity(mine, out / f"sensitivity-{dataset}.png", title=f"{dataset}: sensitivity")
        parts.append(figure(png, f"{dataset}: PSNR, SSIM and task metrics of completed trials against λ and τ "
                                 "(validation split)."))
        front = front_rows(mine, pairs)
        front_all += front
        if front:
            epochs = _epochs(folders, {str(r.get("experiment")) for r in front})
            png = plots.plot_telemetry(epochs, front, out / f"telemetry-{dataset}.png",
                                       title=f"{dataset}: gate telemetry of the front's trials")
            parts.append(figure(png, "Cosine between the enhancement and recognition gradients at every measured "
                                     "step (top; dashed: the trial's threshold) and the share of steps that "
                                     "promoted the recognition gradient per epoch (bottom)."))
            png = plots.plot_cos_histograms(epochs, front, out / f"cos-histograms-{dataset}.png")
            if png is not None:
                parts.append(figure(png, "The cosine's histogram in each epoch (ten bins over [−1, 1]) for the "
                                         "front's gated trials; dashed: cos = 0, GradProm's gate."))
    parts.append("<h2>The front</h2>" + table_html(
        front_all, [("experiment", "experiment"), ("trial_id", "trial"), ("dataset", "dataset"),
                    ("strategy", "strategy"), ("lam", "λ"), ("tau", "τ"),
                    *((n, f"{n} ({d})") for n, d in pairs), ("test_psnr", "test PSNR (dB)"),
                    ("promoted_frac", "promoted"), ("manifest", "manifest")], row_id="front"))
    for folder in folders:
        if (folder / "protocol.parquet").is_file():
            parts.append(_protocol(folder, out))
    if qualitative and front_all:
        parts.append(_qualitative(front_all, pairs, folders, out, step))
    page = out / PAGE
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>gradprom report</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return page


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _experiments(folders: list[Path], manifests: list[dict[str, Any]]) -> str:
    rows = []
    for folder, m in zip(folders, manifests, strict=True):
        argv = m.get("argv") or []
        command = shlex.join(["gradprom", *argv[1:]]) if argv else "(not recorded)"
        rows.append({"name": folder.name, "status": m.get("status", "?"), "trials": m.get("trials", "?"),
                     "command": command})
    return table_html(rows, [("name", "experiment"), ("command", "command"), ("status", "status"),
                             ("trials", "trials")], row_id="experiments")


def _epochs(folders: list[Path], names: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for folder in folders:
        if folder.name in names and (folder / EPOCHS).is_file():
            out += [{**e, "experiment": folder.name} for e in read_rows(folder / EPOCHS)]
    return out


def _protocol(folder: Path, out: Path) -> str:
    """The protocol's tables and verdicts, from its protocol.parquet and protocol.md (and, for a front protocol,
    its fronts' hypervolumes, paired tests and figures)."""
    table = read_rows(folder / "protocol.parquet")
    summary = [r for r in table if r["kind"] == "summary"]
    paired = [r for r in table if r["kind"] == "paired"]
    for r in summary:
        r["value"] = spread_text(r)
    verdicts = [line[2:] for line in (folder / "protocol.md").read_text().splitlines() if line.startswith("- ")] \
        if (folder / "protocol.md").is_file() else []
    return (f"<h2>Protocol: {html.escape(folder.name)}</h2>"
            + "<h3>Mean ± std [95 % CI] over seeds (test split)</h3>"
            + table_html(summary, [("group", "group"), ("strategy", "strategy"), ("metric", "metric"), ("n", "n"),
                                   ("value", "mean ± std [95 % CI]")], row_id=f"protocol-{folder.name}")
            + "<h3>Paired comparisons (strategy − baseline, same seeds)</h3>"
            + table_html(paired, [("group", "group"), ("strategy", "strategy"), ("baseline", "baseline"),
                                  ("metric", "metric"), ("n", "n"), ("mean_diff", "mean diff"), ("p_t", "p (t)"),
                                  ("p_wilcoxon", "p (Wilcoxon)"), ("d_z", "d_z")])
            + _fronts(folder, out, table)
            + "<h3>Verdicts</h3><ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>")


def _fronts(folder: Path, out: Path, table: list[dict[str, Any]]) -> str:
    """A front protocol's hypervolume per strategy over seeds, its paired tests, and its figures (copied beside
    the page); empty for a protocol without fronts."""
    summary = [r for r in table if r["kind"] == "hv_summary"]
    if not summary:
        return ""
    for r in summary:
        r["value"] = spread_text(r)
    paired = [{**r, "lead": f"{r['eaf_lead']:.0%} / {r['eaf_behind']:.0%}"} for r in table if r["kind"] == "hv_paired"]
    figures = []
    for png in sorted((folder / "fronts").glob("*.png")):
        copy = out / f"{folder.name}-{png.name}"
        shutil.copyfile(png, copy)
        figures.append(figure(copy, png.stem.replace("-", " ")))
    return ("<h3>Fronts over λ: hypervolume per seed, mean ± std [95 % CI]</h3>"
            + table_html(summary, [("group", "cell"), ("strategy", "strategy"), ("objectives", "objectives"),
                                   ("reference", "reference point"), ("n", "seeds"), ("value", "hypervolume")],
                         row_id=f"fronts-{folder.name}")
            + "<h3>Fronts: paired comparisons (strategy − baseline, same seeds)</h3>"
            + table_html(paired, [("group", "cell"), ("strategy", "strategy"), ("baseline", "baseline"), ("n", "n"),
                                  ("mean_diff", "mean diff"), ("p_t", "p (t)"), ("p_wilcoxon", "p (Wilcoxon)"),
                                  ("d_z", "d_z"), ("lead", "EAF lead / behind")])
            + "".join(figures))


def _qualitative(front: list[dict[str, Any]], pairs: Any, folders: list[Path], out: Path,
                 step: Callable[[str], None]) -> str:
    """Degraded / enhanced / clean images and Grad-CAM for the best trials: the knee, then each objective's best."""
    from gradprom.trainables import pipeline_info
    from gradprom.trainables.qualitative import qualitative

    chosen: list[dict[str, Any]] = []
    best = knee(front, pairs)
    for candidate in [best] + [max(front, key=lambda r, n=n, d=d: r[n] if d == "max" else -r[n]) for n, d in pairs]:
        if candidate is not None and candidate not in chosen and len(chosen) < QUALITATIVE_TRIALS:
            chosen.append(candidate)
    by_name = {f.name: f for f in folders}
    panels, names = [], []
    for trial in chosen:
        folder = by_name.get(str(trial.get("experiment")))
        checkpoint = _checkpoint(folder, trial) if folder else None
        load_trained = pipeline_info(str(trial.get("pipeline") or "task_driven")).inspect
        if checkpoint is None or load_trained is None:  # a pipeline may have no enhancer-then-recognizer view
            continue
        step(f"Grad-CAM of trial {trial['trial_id']}")
        trained = load_trained(_config(trial), checkpoint)
        panels.append((f"{trial['strategy']} {trial['trial_id'][-5:]}", qualitative(trained, QUALITATIVE_IMAGES)))
        names = list(trained.data.class_names)
    if not panels:
        return ("<h2>Qualitative view</h2><p>No checkpoint of the front's trials was found (ray/ folder removed?), "
                "or their pipeline has no enhancer-then-recognizer view.</p>")
    png = plots.plot_qualitative(panels, out / "qualitative.png", names)
    return "<h2>Qualitative view</h2>" + figure(
        png, "Test images of the front's best trials (the knee first): degraded input, enhanced output, clean "
             "target, and Grad-CAM (captum) of the trial's own recognizer on the enhanced image.")


def _checkpoint(folder: Path, trial: dict[str, Any]) -> Path | None:
    """The trial's last checkpoint folder under the experiment's Ray run (ray/DATASET/TRIAL/checkpoint_*)."""
    found = sorted((folder / "ray" / str(trial.get("dataset")) / str(trial["trial_id"])).glob("checkpoint_*"))
    return found[-1] if found and (found[-1] / "trial.pt").is_file() else None


def _config(row: dict[str, Any]) -> dict[str, Any]:
    """The trial settings of a results row: its recorded `config_json`, or (older rows) every column TrialConfig
    knows whose value has the setting's type (a metric such as the training loss `loss_ip` shadows a setting)."""
    from gradprom.trainables.config import TrialConfig

    if row.get("config_json"):
        return json.loads(row["config_json"])
    defaults = TrialConfig().to_dict()
    return {k: v for k, v in row.items() if k in defaults and v is not None and
            (type(v) is type(defaults[k]) or (isinstance(defaults[k], float) and isinstance(v, int)))}


def check_experiments(experiments: list[str]) -> None:
    if not experiments:
        raise GradpromError("name at least one experiment folder: gradprom report results/* --out report")


__all__ = ["PAGE", "as_objectives", "build_report", "check_experiments"]
