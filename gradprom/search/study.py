"""One dataset's study, run: an Optuna searcher and a Tune scheduler in a Ray Tune Tuner over the trainable, its
live progress and results recorder, and the rows it leaves (from Tune's ResultGrid and the trials that ended)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from gradprom.analysis.pareto import default_direction
from gradprom.results.parquet import TRIALS, error_line, read_rows
from gradprom.results.rows import epoch_row, trial_row, trial_status
from gradprom.results.storage import local_folder, tune_storage
from gradprom.search.request import SearchRequest, StudyPlan, parse_resources
from gradprom.search.searcher import make_sampler

SNAPSHOT_S = 1  # seconds between snapshots of Tune's experiment state


def run_study(study: StudyPlan, req: SearchRequest, folder: Path, console: Console,
              earlier: tuple[list, list] = ([], []), waiting: str = "", tracker: Any = None) -> tuple[list, list]:
    """One Optuna study through one Ray Tune Tuner; returns its (trial rows, epoch rows). `earlier` are the
    rows of the studies before it, rewritten with this one's as its trials end. `waiting` is shown until a
    trial starts (what the search waits for)."""
    import optuna
    from ray import tune

    from gradprom.search.progress import SearchProgress, ended_trials, open_display
    from gradprom.search.recorder import ResultsRecorder, ended_before, keep_ended
    from gradprom.trainables.ray_trial import make_trainable

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune's TensorBoard logger warns on every NaN it is handed; NaN is a legitimate value here (cos_mean of a
    # strategy without a gate), so that warning is noise on the terminal
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    storage = tune_storage(folder)  # the store's ray/ for a storage URI: trials on any node write there
    placement = placement_of(req, f"{storage}/train")
    trainable = make_trainable(study.base, placement)
    run_dir = f"{storage}/{study.dataset}"
    progress = SearchProgress(study.budget, study.base, study.objectives)
    recorder = ResultsRecorder(folder, study.base, study.space.name, study.dataset, req.name, study.budget, earlier,
                               study.objectives, tracker)
    # Snapshot Tune's experiment state (trials, searcher) every second, not every 10 s or more, so a driver
    # killed outright loses at most a second of scheduling; --resume continues from that snapshot.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(SNAPSHOT_S))
    kept = ended_before(folder, study.dataset)  # a resumed study's trials that had ended: their rows stand
    if req.resume and tune.Tuner.can_restore(str(run_dir)):
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        search = make_searcher(study, req, folder)
        scheduler = make_scheduler(req, study, folder)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=req.trials,
                                        max_concurrent_trials=req.concurrency or None, reuse_actors=True,
                                        trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(
                name=study.dataset, storage_path=storage, verbose=0, callbacks=[progress, recorder],
                # two, not one: Tune deletes the older checkpoint as it registers a newer one, and the snapshot
                # that names the older one may not have reached storage yet (a driver killed then resumes from it)
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=req.max_failures)),
        )
    with open_display(f"{study.dataset} · {req.space}", req.trials, console, status=waiting or "starting trials…"):
        grid = tuner.fit()
    return keep_ended(*result_rows(grid, study, req.name, ended_trials(progress)), kept)


def result_rows(grid: Any, study: StudyPlan, experiment: str, ended: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """(trial rows, epoch rows) from a Tune ResultGrid; `ended` holds the trials that ended (the others were cut
    short by a stop, not by a scheduler)."""
    trials, epochs = [], []
    for result in grid:
        trial_id = Path(result.path).name
        final = result.metrics or {}
        status = trial_status(final, study.budget, ended=trial_id in ended or result.error is not None,
                              error=result.error)
        row = trial_row(study.base, study.space.name, study.dataset, experiment, study.budget, trial_id,
                        result.config or {}, final, status, error_line(result.error))
        trials.append(row)
        frame = result.metrics_dataframe
        if frame is not None and len(frame):
            epochs += [e for e in (epoch_row(row, rec) for rec in frame.to_dict("records")) if e is not None]
    return trials, epochs


def placement_of(req: SearchRequest, storage: Path | str = "") -> Any:
    """How each trial of the request runs (workers, CPUs, GPUs, custom resources, Ray Train's storage)."""
    from gradprom.trainables.ray_trial import Placement

    return Placement(workers=req.workers_per_trial, cpus=req.cpus_per_trial, gpus=req.gpus_per_trial,
                     storage_path=str(storage), custom=tuple(parse_resources(req.trial_resources)))


def make_scheduler(req: SearchRequest, study: StudyPlan, folder: Path | None = None) -> Any:
    """The Tune scheduler: FIFO (every trial runs its budget), ASHA on `--metric`, or ParetoASHA on every
    objective. Trials either stops end short of their budget: Optuna is told PRUNED, and no front takes them. With
    --fidelity-check N the stopper is wrapped in a `FidelityGate`, which trusts it only once its first rung has been
    shown to rank the final objectives on N trials (its decision lands in `folder`/fidelity-DATASET.json)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from gradprom.search.fidelity import FidelityGate, fidelity_file
    from gradprom.search.schedulers import ParetoASHA

    max_t = req.max_t or study.budget
    if req.scheduler == "asha":
        stopper = ASHAScheduler(metric=req.metric, mode=default_direction(req.metric), time_attr="training_iteration",
                                max_t=max_t, grace_period=req.grace_period, reduction_factor=req.reduction_factor)
    elif req.scheduler == "pareto-asha":
        stopper = ParetoASHA(study.objectives, max_t=max_t, grace_period=req.grace_period,
                             reduction_factor=req.reduction_factor, tiebreak=req.tiebreak)
    else:
        return FIFOScheduler()
    if not req.fidelity_check:
        return stopper
    return FidelityGate(stopper, [name for name, _ in study.objectives], rung=req.grace_period, budget=study.budget,
                        probe=req.fidelity_check, min_rho=req.min_rho,
                        record=str(fidelity_file(folder, study.dataset)) if folder is not None else "")


def make_searcher(study: StudyPlan, req: SearchRequest, folder: Path | None = None) -> Any:
    """The study's Optuna searcher: one objective per `--objectives` entry, with its direction; a protocol's
    cells enqueued (so the sampler never draws). With `folder`, the study lives in Optuna storage (a journal file
    there, or `--storage`), named NAME-DATASET, and `--warm-start` hands it an earlier experiment's trials."""
    import optuna

    from gradprom.search.searcher import StudySearcher, study_storage, warm_start
    from gradprom.search.seeding import startup_points, startup_size

    names, modes = [n for n, _ in study.objectives], [d for _, d in study.objectives]
    storage, study_name = (study_storage(folder, req.storage), f"{req.name}-{study.dataset}") if folder else (None,
                                                                                                             None)
    if storage is not None:  # a new study: one of that name in the storage is an overwritten experiment's
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study_name, storage=storage)
    if storage is not None and req.warm_start:
        created = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                      directions=["maximize" if m == "max" else "minimize" for m in modes])
        earlier = [r for r in read_rows(local_folder(req.warm_start) / TRIALS) if r.get("dataset") == study.dataset]
        warm_start(created, earlier, study.space.distributions(), names)
    points = study.points  # a protocol's cells; for a model-based search its start (anchors, space-filling)
    if req.sampler == "gp" and not points:
        points = startup_points(study.space, startup_size(req.trials), req.seed)
    return StudySearcher(study.space.distributions(), names, modes, make_sampler(req.sampler, req.seed, req.trials),
                         study.budget, points_to_evaluate=points, storage=storage, study_name=study_name)
