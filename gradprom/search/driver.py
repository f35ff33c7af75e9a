"""`gradprom search` and `gradprom protocol`, driven: the folder prepared, Ray started or reached, each study run in
turn with its results written as trials end, and the end said in one line (finished, interrupted with the command
that continues it, or every trial of a dataset failed)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from gradprom.analysis.pareto import OBJECTIVES, Objective, as_objectives, front_rows, objective_text
from gradprom.analysis.tables import front_table
from gradprom.errors import GradpromError, SearchBroke, SearchFailed, SearchInterrupted
from gradprom.results.experiment import NOT_STARTED, OWNED, new_manifest, prepare_folder, this_driver, write_manifest
from gradprom.results.rows import write_results
from gradprom.results.storage import publish, store_of
from gradprom.results.tracking import Tracker, check_store, stopped_on_error, tracking_uri
from gradprom.search.fidelity import fidelity_columns, fidelity_file
from gradprom.search.nodes import alive_nodes, capacity_note, check_data_on_nodes
from gradprom.search.request import SearchRequest, StudyPlan, complete_request, local_cpus, plan
from gradprom.search.runtime import (
    TERMINATED,
    own_process_group,
    place_on_gpus,
    ray_initialized,
    ray_runtime,
    sigterm_as_interrupt,
)
from gradprom.search.searcher import JOURNAL, study_storage
from gradprom.search.study import placement_of, run_study
from gradprom.search_spaces.protocol import Protocol, load_protocol
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import pipeline_info
from gradprom.trainables.provenance import versions


def run_search(req: SearchRequest, console: Console | None = None) -> Path:
    """Run the whole search; returns the experiment folder holding the Parquet results.

    Everything that can be checked without training is checked before the folder is touched. Results are
    written as trials end; a search stopped midway (Ctrl-C or SIGTERM) keeps what finished, marks itself
    `interrupted` and says how to continue. A run stopped before its first trial leaves its folder
    `not_started`, which the corrected rerun reuses without --resume.
    """
    console = console or Console()
    req = complete_request(req)
    studies = plan(req)
    req.pipeline = req.pipeline or studies[0].base["pipeline"]  # what the manifest (and --resume) records
    req.objectives = req.objectives or objective_text(studies[0].objectives)
    if req.scheduler == "asha" and len(studies[0].objectives) > 1:
        console.print(f"[yellow]--scheduler asha stops trials on {req.metric} alone, so it may stop trials that "
                      f"would reach the front on {req.objectives}; --scheduler pareto-asha ranks on all of them"
                      "[/yellow]", highlight=False)
    folder = req.folder()
    uri = tracking_uri(req.mlflow)
    if uri:  # an unreachable or unwritable store is bad input, found before the folder is touched
        check_store(uri)
    manifest = prepare_folder(folder, req.resume, req.overwrite) or new_manifest(asdict(req))
    tracker = Tracker(uri, req.name, folder) if uri else None
    if tracker is not None:
        tracker.start(asdict(req), versions())
    store = store_of(folder)
    if store is not None and req.overwrite:
        store.delete(OWNED)  # the local copy was replaced (proven gradprom's); so is what the store held
    manifest.update(status="running", driver=this_driver())
    manifest.pop("error", None)
    write_manifest(folder, manifest)
    progress = {"trials": [], "epochs": [], "started": False, "finished": False}

    def on_sigterm() -> None:
        if progress["finished"]:  # the end is written: stop showing it, shut Ray down, exit 143
            return
        if progress["started"]:
            manifest.update(status="interrupted")
            write_manifest(folder, manifest)
        console.print(f"SIGTERM: stopping the search and saving what finished (a second signal stops at once); "
                      f"continue later with: {again_command(req, resume=progress['started'])}", highlight=False,
                      markup=False, soft_wrap=True)

    try:
        if req.storage:  # reach the study database now: an unreachable one is bad input, found before any work
            study_storage(folder, req.storage)
        with sigterm_as_interrupt(on_sigterm), stopped_on_error(tracker), search_runtime(req):
            front = run_studies(req, studies, folder, console, progress, tracker)
            # the end is written before Ray shuts down, so a stop from here on has nothing left to save
            finish(folder, manifest, studies, tracker, front, progress)
            summarize(progress["trials"], front, folder, console, studies[-1].objectives)
    except KeyboardInterrupt:  # a signal outside Tune's loop (reading data, the reference, between studies)
        if progress["finished"]:  # a stop as the search showed its end: nothing left to save
            raise SystemExit(143 if TERMINATED.is_set() else 130) from None
        stopped = NOT_STARTED if not progress["started"] else "interrupted"
        manifest.update(status=stopped)
        write_manifest(folder, manifest)
        raise interrupted(req, folder, "stopped before its first trial" if stopped == NOT_STARTED else
                          "search interrupted", started=stopped != NOT_STARTED) from None
    except SearchInterrupted:
        manifest.update(status="interrupted")
        write_manifest(folder, manifest)
        raise
    except GradpromError as exc:  # bad input found late (the cluster, the data, the storage): one line as always
        if not progress["started"]:
            manifest.update(status=NOT_STARTED, error=str(exc))
            write_manifest(folder, manifest)
        raise
    except Exception as exc:  # gradprom's own bug: keep what finished, mark the folder resumable, say so in one line
        last = (str(exc).strip().splitlines() or [""])[-1]  # a TuneError carries a traceback: its last line says it
        what = " ".join(f"{type(exc).__name__}: {last}".split())[:300]
        if not progress["finished"]:  # (a search that ended, then broke showing its end, stays `finished`)
            manifest.update(status="interrupted" if progress["started"] else NOT_STARTED, error=what)
            write_manifest(folder, manifest)
        raise SearchBroke(f"the search stopped on an unexpected error ({what}); finished trials are saved in "
                          f"{folder}; continue with: {again_command(req, resume=progress['started'])} (and please "
                          "report it)") from exc
    check_some_finished(progress["trials"], req.datasets, folder)
    return folder


@contextmanager
def search_runtime(req: SearchRequest) -> Iterator[None]:
    """Ray for the search: reached at --address (or the caller's own session), else started locally in a process
    group of its own."""
    local = not req.address and not ray_initialized()
    with own_process_group() if local else contextlib.nullcontext(), \
            ray_runtime(req.address, None if req.address else local_cpus()):
        yield


def finish(folder: Path, manifest: dict[str, Any], studies: list[StudyPlan], tracker: Tracker | None,
           front: list[dict], progress: dict[str, Any]) -> None:
    """Write the end of a search that ran to its end: the manifest `finished` (with --fidelity-check's decisions),
    then the MLflow run's status and front."""
    trials = progress["trials"]
    manifest.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), trials=len(trials))
    checks = {s.dataset: json.loads(fidelity_file(folder, s.dataset).read_text()) for s in studies
              if fidelity_file(folder, s.dataset).is_file()}
    if checks:
        manifest["fidelity"] = checks
    write_manifest(folder, manifest)
    progress["finished"] = True
    if tracker is not None:
        tracker.finish("FINISHED" if any(t["status"] == "completed" for t in trials) else "FAILED", front, trials)


def run_studies(req: SearchRequest, studies: list[StudyPlan], folder: Path, console: Console,
                progress: dict[str, Any], tracker: Tracker | None = None) -> list[dict]:
    """Run each study in turn on the search's Ray runtime, writing the results after each; returns the last front.
    `progress` collects the rows and says whether a trial has started (for the manifest if this raises)."""
    front: list[dict] = []
    place_on_gpus(req)
    need = placement_of(req).worker_resources()
    waiting = capacity_note(need, alive_nodes(), on_cluster=bool(req.address))
    if waiting:
        console.print(f"[yellow]{waiting}; trials start as nodes join (Ctrl-C stops the search)[/yellow]")
    for study in studies:
        if not req.address:
            prepare_reference(study.base, console)
        else:
            with console.status(f"[bold]{study.dataset}: checking the data on every node that can host a trial…"):
                check_data_on_nodes(study.base, need)
        progress["started"] = True
        t_rows, e_rows = run_study(study, req, folder, console, earlier=(progress["trials"], progress["epochs"]),
                                   waiting=waiting, tracker=tracker)
        checked = fidelity_columns(folder, study.dataset)  # --fidelity-check's decision, on every row
        for row in t_rows:
            row.update(checked)
        progress["trials"] += t_rows
        progress["epochs"] += e_rows
        front = front_rows(progress["trials"], study.objectives)
        write_results(folder, progress["trials"], progress["epochs"], front)
        if not req.storage and (folder / JOURNAL).is_file():
            publish(folder, JOURNAL)
        unfinished = sum(t["status"] == "interrupted" for t in t_rows) + max(0, req.trials - len(t_rows))
        if unfinished:
            raise interrupted(req, folder, f"search interrupted with {unfinished} of {req.trials} trials of "
                              f"{study.dataset} unfinished; finished trials are saved in {folder}")
    return front


def prepare_reference(base: dict[str, Any], console: Console) -> None:
    """Decode the data (filling the preprocessing cache) and pretrain (or find cached) the clean-image
    reference recognizers once, before trials start; say how many bad files --skip-bad left out."""
    from gradprom.trainables.build import resolve_device, trial_data
    from gradprom.trainables.reference import pretrained_recognizer

    cfg = TrialConfig.from_dict(base)
    for one in filter(None, (cfg, cfg.aux_config(), cfg.eval_config())):
        with console.status(f"[bold]{one.dataset}: reading the data, then the reference recognizer for "
                            f"{one.task} (trained once, then cached)…"):
            data = trial_data(one, resolve_device(one.device))  # what the trials train the reference on
            if data.skipped:
                console.print(f"[yellow]{one.dataset}: left out {len(data.skipped)} bad file(s) (--skip-bad), e.g. "
                              f"{data.skipped[0]}; `gradprom datasets check {one.dataset}` lists them all[/yellow]",
                              highlight=False, soft_wrap=True)  # a path is never broken across lines
            if pipeline_info(one.pipeline).reference:
                pretrained_recognizer(one, data, resolve_device(one.device), reference=True)


def interrupted(req: SearchRequest, folder: Path, what: str, started: bool = True) -> SearchInterrupted:
    """The one line a stopped search ends with (exit 130 after Ctrl-C, 143 after SIGTERM): what happened and the
    command that continues it."""
    error = SearchInterrupted(f"{what} ({'SIGTERM' if TERMINATED.is_set() else 'Ctrl-C'}); continue with: "
                              f"{again_command(req, resume=started)}")
    error.exit_code = 143 if TERMINATED.is_set() else 130
    return error


def again_command(req: SearchRequest, resume: bool = True) -> str:
    """The command that continues this search (or, before its first trial, starts it again)."""
    how = f"gradprom protocol {req.protocol}" if req.protocol else "gradprom search"
    return f"{how} --out {req.out} --name {req.name}" + (" --resume" if resume else "")


def check_some_finished(trials: list[dict], datasets: list[str], folder: Path) -> None:
    """Raise SearchFailed (exit 1) when a dataset's study has no trial that finished (completed or stopped early
    by the scheduler): a search whose every trial failed must not look like a success to a script."""
    for dataset in datasets:
        mine = [t for t in trials if t["dataset"] == dataset]
        if mine and not any(t["status"] in ("completed", "stopped_early") for t in mine):
            raise SearchFailed(f"all {len(mine)} trial(s) of {dataset} failed (the first: {mine[0]['error']}); "
                               f"nothing to rank: fix what the error says and search again (their rows are in "
                               f"{folder / 'trials.parquet'})")


def summarize(trials: list[dict], front: list[dict], folder: Path, console: Console,
              objectives: tuple[Objective, ...] = as_objectives(OBJECTIVES)) -> None:
    counts = {s: sum(1 for t in trials if t["status"] == s) for s in ("completed", "stopped_early", "failed")}
    datasets = ", ".join(sorted({str(t["dataset"]) for t in trials}))
    on = " vs ".join(n for n, _ in objectives)
    console.print(front_table(front, f"Pareto front on {datasets}: {on}, validation split "
                                     f"({len(front)} of {len(trials)} trials)", objectives))
    console.print(f"{len(trials)} trials: {counts['completed']} completed, {counts['stopped_early']} stopped early, "
                  f"{counts['failed']} failed · results in {folder}")
    for t in trials:
        if t["status"] == "failed":
            console.print(f"  [red]failed[/red] {t['trial_id']} ({t['strategy']}, λ={t['lam']:.3g}): {t['error']}")


def protocol_request(name: str, req: SearchRequest, quick: bool = False, seeds: int = 0) -> tuple[Protocol,
                                                                                                 SearchRequest]:
    """The protocol and the search request that runs it (trials = its cells); checks what it needs."""
    if name.endswith(".json"):  # a user's protocol file: kept by absolute path, so --resume finds it
        name = str(Path(name).expanduser().resolve())
    protocol = load_protocol(name, quick=quick, seeds=seeds)
    if "eval_dataset" in protocol.needs and not req.eval_dataset:
        raise GradpromError(f"protocol {protocol.name} scores a second dataset: pass --eval-dataset NAME")
    req.protocol, req.quick, req.protocol_seeds = name, quick, seeds
    req.space = f"protocol-{Path(name).stem}" + ("-quick" if quick else "")
    req.trials = len(protocol.cells())
    return protocol, req


def run_protocol(name: str, req: SearchRequest, console: Console, quick: bool = False, seeds: int = 0) -> Path:
    """Run (or, with req.resume, continue) the protocol, then write and print its evidence."""
    from gradprom.analysis.evidence import write_evidence

    protocol, req = protocol_request(name, req, quick, seeds)
    folder = run_search(req, console)
    write_evidence(protocol, folder, console)
    if tracking_uri(req.mlflow):  # the evidence, written after the search's run ended, joins its artefacts
        Tracker(tracking_uri(req.mlflow), req.name, folder).attach()
    return folder
