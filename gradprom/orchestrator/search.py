"""`gradprom search`: one Optuna multi-objective study per dataset, run as Ray Tune trials.

Everything is validated before Ray starts. Results land in OUT/NAME as trials/epochs/pareto Parquet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from gradprom.datasets import TASKS, dataset_options_json
from gradprom.errors import GradpromError, SearchFailed, SearchInterrupted, unknown_name
from gradprom.metrics import task_metric_name
from gradprom.orchestrator.experiment import (
    NOT_STARTED,
    OWNED,
    check_name,
    new_manifest,
    prepare_folder,
    read_manifest,
    this_driver,
    write_manifest,
)
from gradprom.orchestrator.nodes import alive_nodes, capacity_note, check_address, check_data_on_nodes
from gradprom.orchestrator.optuna_search import JOURNAL, NOT_OFFERED, SAMPLERS, check_storage_url, make_sampler
from gradprom.orchestrator.pareto import (
    OBJECTIVES,
    Objective,
    as_objectives,
    default_direction,
    objective_text,
    parse_objectives,
)
from gradprom.orchestrator.results import TRIALS, error_line, read_rows
from gradprom.orchestrator.rows import epoch_row, trial_row, trial_status, write_results
from gradprom.orchestrator.schedulers import TIEBREAKS
from gradprom.orchestrator.storage import local_folder, publish, store_of, tune_storage
from gradprom.orchestrator.tables import front_table
from gradprom.plugins import runtime_env_vars
from gradprom.search_spaces import SearchSpace, apply_overrides, load_space
from gradprom.search_spaces.protocol import load_protocol
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import DEFAULT as DEFAULT_PIPELINE
from gradprom.trainables.pipeline import pipeline_info, preflight

SCHEDULERS = ("fifo", "asha", "pareto-asha")
DEFAULT_DATASET = "synthetic"
SNAPSHOT_S = 1  # seconds between snapshots of Tune's experiment state


@dataclass
class SearchRequest:
    """What `gradprom search` was asked; validated by `plan()` before Ray starts."""

    space: str = ""  # empty: the pipeline's first space for a new search, the original one when resuming
    pipeline: str = ""  # empty: the space's own (`fixed`), else task_driven
    datasets: list[str] = field(default_factory=list)
    task: str = "classification"
    trials: int = 12
    epochs: int = 6
    out: str = "results"
    name: str = ""
    seed: int = 0
    address: str = ""
    concurrency: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1
    scheduler: str = "fifo"
    metric: str = "psnr"  # what asha stops on (pareto-asha ranks on all the objectives)
    grace_period: int = 1  # asha / pareto-asha: epochs before the first rung
    reduction_factor: float = 2.0  # asha / pareto-asha: η, a rung keeps the top 1/η
    max_t: int = 0  # asha / pareto-asha: the budget the rungs lead up to (0: --epochs)
    tiebreak: str = "crowding"  # pareto-asha: within a front, crowding distance or an ε-net
    sampler: str = "tpe"
    params: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # typed trial settings the CLI's flags fix (--precision…)
    data_options: list[str] = field(default_factory=list)  # KEY=VALUE options of the dataset(s)
    skip_bad: bool = False
    eval_dataset: str = ""
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    max_failures: int = 1
    trial_resources: list[str] = field(default_factory=list)  # NAME=AMOUNT custom resources per trial worker
    objectives: str = ""  # what the study and its front optimise, e.g. psnr,acc_ref; empty: the pipeline's own
    protocol: str = ""  # a protocol (name or file) instead of a space: its grid's cells, enqueued, none sampled
    quick: bool = False  # the protocol's quick section
    protocol_seeds: int = 0  # seeds of the protocol (0: as its file says)
    storage: str = ""  # Optuna storage: an RDB URL; empty keeps a journal file in the experiment folder
    warm_start: str = ""  # an earlier experiment whose finished trials seed each study

    def folder(self) -> Path:
        """OUT/NAME, or for a storage URI its local mirror (see `storage`)."""
        return local_folder(self.out, self.name)


@dataclass
class StudyPlan:
    """One dataset's study: its space (after overrides), the settings every trial shares, what it optimises,
    and (for a protocol) the cells to run instead of sampling."""

    dataset: str
    space: SearchSpace
    base: dict[str, Any]
    objectives: tuple[Objective, ...] = as_objectives(OBJECTIVES)
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def budget(self) -> int:
        return int(self.base["epochs"])


def epoch_metrics(task: str, pipeline: str = DEFAULT_PIPELINE) -> list[str]:
    """The numeric figures every trial of `task` reports each epoch on the validation split (the pipeline's
    metrics, less the other task's): what a search may optimise (`--objectives`)."""
    other = task_metric_name("segmentation" if task == "classification" else "classification")
    return [m for m in pipeline_info(pipeline)["metrics"] if not m.startswith(other)]


def pipeline_of(req: SearchRequest, space: SearchSpace) -> str:
    """The request's pipeline: --pipeline, else the one its space fixes, else the default; never two."""
    fixed = space.fixed.get("pipeline", "")
    if req.pipeline and fixed and req.pipeline != fixed:
        raise GradpromError(f"space '{space.name}' is for pipeline '{fixed}', not '{req.pipeline}'; pick one of "
                            f"'{req.pipeline}''s spaces ({', '.join(pipeline_info(req.pipeline)['spaces'])})")
    name = req.pipeline or fixed or DEFAULT_PIPELINE
    if req.task in TASKS and req.task not in pipeline_info(name)["tasks"]:  # an unknown task: preflight says so
        raise GradpromError(f"pipeline '{name}' trains on {', '.join(pipeline_info(name)['tasks'])}, not "
                            f"'{req.task}'; pick --task {pipeline_info(name)['tasks'][0]}")
    return name


def parse_resources(items: list[str]) -> list[tuple[str, float]]:
    """`--trial-resource NAME=AMOUNT` values as (name, amount) pairs: custom Ray node resources each trial
    worker holds (e.g. a node label such as `A100=1`, or a share of one: `gradprom_worker=0.5`)."""
    found = []
    for item in items:
        name, sep, amount = item.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not value > 0 or name.strip() in ("CPU", "GPU", "memory"):
            raise GradpromError(f"--trial-resource '{item}' is not NAME=AMOUNT with a custom resource name and an "
                                "amount > 0 (CPUs and GPUs have --cpus-per-trial/--gpus-per-trial)")
        found.append((name.strip(), value))
    return found


def plan(req: SearchRequest, data: bool = True) -> list[StudyPlan]:
    """Validate the whole request and build one StudyPlan per dataset; raises GradpromError on bad input.

    Every option that needs no data is checked first, for every dataset; then (with `data`) one image goes through
    each extreme of the space and the largest batch is checked against the training split. Without `data` (a job
    about to be submitted to a cluster, whose data and files are there, not here) only the first part runs."""
    if req.trials < 1:
        raise GradpromError(f"--trials must be ≥ 1, got {req.trials}")
    if req.epochs < 1:
        raise GradpromError(f"--epochs must be ≥ 1, got {req.epochs}")
    if req.scheduler not in SCHEDULERS:
        raise unknown_name("scheduler", req.scheduler, SCHEDULERS, option="--scheduler")
    if req.sampler in NOT_OFFERED:
        raise GradpromError(NOT_OFFERED[req.sampler])
    if req.sampler not in SAMPLERS:
        raise unknown_name("sampler", req.sampler, SAMPLERS, option="--sampler")
    for flag, value, ok, rule in (
            ("--grace-period", req.grace_period, req.grace_period >= 1, "≥ 1"),
            ("--reduction-factor", req.reduction_factor, req.reduction_factor > 1, "> 1"),
            ("--max-t", req.max_t, 0 <= req.max_t <= req.epochs, f"in 0…--epochs ({req.epochs})"),
            ("--max-failures", req.max_failures, req.max_failures >= 0, "≥ 0"),
            ("--cpus-per-trial", req.cpus_per_trial, req.cpus_per_trial > 0, "> 0"),
            ("--gpus-per-trial", req.gpus_per_trial, req.gpus_per_trial >= 0, "≥ 0"),
            ("--workers-per-trial", req.workers_per_trial, req.workers_per_trial >= 1, "≥ 1"),
            ("--concurrency", req.concurrency, req.concurrency >= 0, "≥ 0 (0 fills the CPUs)")):
        if not ok:
            raise GradpromError(f"{flag} must be {rule}, got {value:g}")
    if req.tiebreak not in TIEBREAKS:
        raise unknown_name("tiebreak", req.tiebreak, TIEBREAKS, option="--tiebreak")
    if not req.address and req.cpus_per_trial * req.workers_per_trial > local_cpus():
        raise GradpromError(f"a trial needs {req.cpus_per_trial * req.workers_per_trial:g} CPUs (--cpus-per-trial × "
                            f"--workers-per-trial) but this machine has {local_cpus()}; lower them, or run on a "
                            "cluster with --address")
    if req.storage and data:
        check_storage_url(req.storage)
    parse_resources(req.trial_resources)
    if req.warm_start and data:  # read now: a missing or foreign experiment is one line before anything runs
        read_rows(local_folder(req.warm_start) / TRIALS)
    if not req.datasets:
        raise GradpromError("--dataset names no dataset; e.g. --dataset synthetic")
    if len(set(req.datasets)) != len(req.datasets):
        raise GradpromError(f"--dataset lists a dataset twice ({','.join(req.datasets)}); name each once")
    threads = max(1, int(req.cpus_per_trial))
    plans = []
    for dataset in req.datasets:
        protocol = load_protocol(req.protocol, req.quick, req.protocol_seeds) if req.protocol else None
        space = protocol.space() if protocol else \
            apply_overrides(load_space(req.space, req.task), list(req.params), req.settings)
        if protocol and (req.params or req.settings):  # a protocol's grid is fixed: --param may only fix the rest
            given = apply_overrides(SearchSpace("--param", ""), list(req.params), req.settings)
            clash = sorted(set(space.params) & {*given.fixed, *given.params})
            if clash or given.params:
                raise GradpromError(f"--param {(clash or sorted(given.params))[0]}: a protocol's grid is fixed; "
                                    "--param may only fix settings it leaves alone (KEY=VALUE)")
            space.fixed.update(given.fixed)
        if "epochs" in space.params:
            raise GradpromError("epochs is the trial budget and cannot be searched; fix it with --epochs")
        if not space.params:
            raise GradpromError(f"space '{req.space}' has nothing left to search after --param; "
                                "use `gradprom train` for a single configuration")
        pipeline = pipeline_of(req, space)
        base = {"pipeline": pipeline, "dataset": dataset, "task": req.task, "epochs": req.epochs, "seed": req.seed,
                "device": req.device, "threads": threads, "skip_bad": req.skip_bad, "eval_dataset": req.eval_dataset,
                **packing_bound(req.gpus_per_trial), **space.fixed}
        if req.data_options:
            base["data_options"] = dataset_options_json(dataset, list(req.data_options))
        for endpoint in space.endpoints():
            TrialConfig.from_dict({**base, **endpoint}).check_names()
        objectives = parse_objectives(req.objectives or ",".join(pipeline_info(pipeline)["objectives"]),
                                      known=epoch_metrics(req.task, pipeline))
        if req.metric not in {*OBJECTIVES, "ssim", *(n for n, _ in objectives)}:
            raise GradpromError(f"--metric must be psnr, ssim, task_metric or one of --objectives, got "
                                f"'{req.metric}'")
        plans.append(StudyPlan(dataset, space, base, objectives, protocol.cells() if protocol else []))
    for study in plans if data else []:
        for endpoint in study.space.endpoints():
            preflight(TrialConfig.from_dict({**study.base, **endpoint}))
        check_batch_fits(study.space, study.base, req.workers_per_trial)
    return plans


def check_offline(req: SearchRequest) -> None:
    """What can be checked of a search or protocol on a machine that only submits it (`gradprom cluster submit`):
    its names, ranges and spaces, none of its data, files or cluster. --resume is the cluster's to check."""
    if req.resume:
        return
    req.space = req.space or pipeline_info(req.pipeline or DEFAULT_PIPELINE)["spaces"][0]
    req.datasets = req.datasets or [DEFAULT_DATASET]
    if req.name:
        check_name(req.name)
    plan(replace(req, address=req.address or "cluster"), data=False)


def packing_bound(gpus_per_trial: float) -> dict[str, float]:
    """Trials packed on a GPU (a share below 1) each get that share of its memory as a hard bound, so one
    trial's peak cannot push the others out of memory; `-p gpu_memory_fraction=F` sets another."""
    return {"gpu_memory_fraction": gpus_per_trial} if 0 < gpus_per_trial < 1 else {}


def check_batch_fits(space: SearchSpace, base: dict[str, Any], workers: int) -> None:
    """A batch larger than each worker's share of the training split leaves an epoch no step, so every trial
    drawing it would fail in its first epoch: say so before Ray starts, for the largest batch the space can
    draw on the smallest training split. Split sizes come from listing the samples (cheap, nothing decoded)."""
    from gradprom.datasets import split_sizes
    from gradprom.trainables.build import dataset_options

    worst = dict(base)  # the shared settings, the space's fixed ones included
    for key, pick in (("batch_size", max), ("n_train", min)):
        if (spec := space.params.get(key)) is not None:
            worst[key] = pick(spec["choices"] if spec["type"] == "categorical" else (spec["low"], spec["high"]))
    cfg = TrialConfig.from_dict(worst)
    options = dataset_options(cfg, cache=False)
    listed = split_sizes(cfg.dataset, task=cfg.task, image_size=cfg.image_size, seed=cfg.seed, **options)
    if listed is None:  # a dataset that cannot say: the trial itself reports it
        return
    n, batch = listed[0], cfg.batch_size
    per_worker = max(1, batch // workers)
    if n // workers >= per_worker:  # then epoch.train_epoch has at least one step per epoch
        return
    which = "the top of the searched batch_size" if "batch_size" in space.params else "batch_size"
    if cfg.n_train and n == cfg.n_train:  # the cap binds: more of the data is there
        more = f"or use more of the data (-p n_train, now {n})"
    else:
        more = "or put more training data under --data-root" if "data_root" in options else \
            "or make more data (-p n_train=N)"
    if n < workers:
        raise GradpromError(f"the training split of {cfg.dataset} has {n} sample(s), fewer than the {workers} workers "
                            f"of a trial; use --workers-per-trial {n} or fewer, {more}")
    if workers == 1:
        raise GradpromError(f"{which} {batch} is larger than the training split of {cfg.dataset} ({n} samples); "
                            f"lower it (--param batch_size={n} or less) {more}")
    top = (n // workers) * workers
    raise GradpromError(f"{which} {batch} over {workers} workers ({per_worker} each) is larger than each worker's "
                        f"share of the training split of {cfg.dataset} ({n} samples, {n // workers} each); lower it "
                        f"(--param batch_size={top} or less) {more}")


def ray_initialized() -> bool:
    """Whether this process is already connected to Ray (a caller's own session, which ray_runtime reuses)."""
    import ray

    return ray.is_initialized()


@contextmanager
def ray_runtime(address: str, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to `address`, or start Ray locally (dashboard off, nothing leaves the machine)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; Rich shows progress
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if plugins := runtime_env_vars():  # users' registrations must reach the trial processes
        kwargs["runtime_env"] = {"env_vars": plugins}
    # ray.init replaces the driver's SIGTERM handling (Python's with sys.exit, then its C++ core's with a stack
    # dump): the caller's own handler (sigterm_as_interrupt) is put back once Ray is up
    main = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise GradpromError(f"could not start or reach {where}: {str(exc).splitlines()[0]}; check --address") from exc
    finally:
        if callable(on_sigterm):
            signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        ray.shutdown()


def prepare_reference(base: dict[str, Any], console: Console) -> None:
    """Decode the data (filling the preprocessing cache) and pretrain (or find cached) the clean-image
    reference recognizers once, before trials start; say how many bad files --skip-bad left out."""
    from gradprom.trainables.build import build_data, resolve_device
    from gradprom.trainables.reference import pretrained_recognizer

    cfg = TrialConfig.from_dict(base)
    for one in filter(None, (cfg, cfg.aux_config(), cfg.eval_config())):
        with console.status(f"[bold]{one.dataset}: reading the data, then the reference recognizer for "
                            f"{one.task} (trained once, then cached)…"):
            data = build_data(one)
            if data.skipped:
                console.print(f"[yellow]{one.dataset}: left out {len(data.skipped)} bad file(s) (--skip-bad), e.g. "
                              f"{data.skipped[0]}; `gradprom datasets check {one.dataset}` lists them all[/yellow]",
                              highlight=False, soft_wrap=True)  # a path is never broken across lines
            if pipeline_info(one.pipeline)["reference"]:
                pretrained_recognizer(one, data, resolve_device(one.device), reference=True)


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


def run_study(study: StudyPlan, req: SearchRequest, folder: Path, console: Console,
              earlier: tuple[list, list] = ([], []), waiting: str = "") -> tuple[list, list]:
    """One Optuna study through one Ray Tune Tuner; returns its (trial rows, epoch rows). `earlier` are the
    rows of the studies before it, rewritten with this one's as its trials end. `waiting` is shown until a
    trial starts (what the search waits for)."""
    import optuna
    from ray import tune

    from gradprom.orchestrator.progress import SearchProgress, ended_trials, open_display
    from gradprom.orchestrator.recorder import ResultsRecorder
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
                               study.objectives)
    # Snapshot Tune's experiment state (trials, searcher) every second, not every 10 s or more, so a driver
    # killed outright loses at most a second of scheduling; --resume continues from that snapshot.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(SNAPSHOT_S))
    if req.resume and tune.Tuner.can_restore(str(run_dir)):
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        search = make_searcher(study, req, folder)
        scheduler = make_scheduler(req, study)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=req.trials,
                                        max_concurrent_trials=req.concurrency or None, reuse_actors=True,
                                        trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(
                name=study.dataset, storage_path=storage, verbose=0, callbacks=[progress, recorder],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=req.max_failures)),
        )
    with open_display(f"{study.dataset} · {req.space}", req.trials, console, status=waiting or "starting trials…"):
        grid = tuner.fit()
    return result_rows(grid, study, req.name, ended_trials(progress))


def make_scheduler(req: SearchRequest, study: StudyPlan) -> Any:
    """The Tune scheduler: FIFO (every trial runs its budget), ASHA on `--metric`, or ParetoASHA on every
    objective. Trials either stops end short of their budget: Optuna is told PRUNED, and no front takes them."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from gradprom.orchestrator.schedulers import ParetoASHA

    max_t = req.max_t or study.budget
    if req.scheduler == "asha":
        return ASHAScheduler(metric=req.metric, mode=default_direction(req.metric), time_attr="training_iteration",
                             max_t=max_t, grace_period=req.grace_period, reduction_factor=req.reduction_factor)
    if req.scheduler == "pareto-asha":
        return ParetoASHA(study.objectives, max_t=max_t, grace_period=req.grace_period,
                          reduction_factor=req.reduction_factor, tiebreak=req.tiebreak)
    return FIFOScheduler()


def make_searcher(study: StudyPlan, req: SearchRequest, folder: Path | None = None) -> Any:
    """The study's Optuna searcher: one objective per `--objectives` entry, with its direction; a protocol's
    cells enqueued (so the sampler never draws). With `folder`, the study lives in Optuna storage (a journal file
    there, or `--storage`), named NAME-DATASET, and `--warm-start` hands it an earlier experiment's trials."""
    import optuna

    from gradprom.orchestrator.optuna_search import StudySearcher, study_storage, warm_start

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
    return StudySearcher(study.space.distributions(), names, modes, make_sampler(req.sampler, req.seed, req.trials),
                         study.budget, points_to_evaluate=study.points, storage=storage, study_name=study_name)


#: options that may differ when resuming: where and how wide it runs, not what it searches
RESUMABLE_CHANGES = {"resume", "overwrite", "address", "concurrency", "trial_resources"}


def resumed_request(req: SearchRequest) -> SearchRequest:
    """The request an experiment was started with (from its manifest), refusing options that change it."""
    if not req.name:
        raise GradpromError("--resume needs the --name of the experiment to continue")
    folder = req.folder()
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None or "request" not in manifest:
        raise GradpromError(f"nothing to resume at {folder}; run without --resume to start it")
    original = SearchRequest(**manifest["request"])
    defaults = SearchRequest()
    for f in fields(SearchRequest):
        key, given, then = f.name, getattr(req, f.name), getattr(original, f.name)
        if key == "settings":  # one flag per setting: those given again must be as they were
            key = next((k for k in given if given[k] != then.get(k)), "")
            given, then = given.get(key), then.get(key, "unset")
        if key in RESUMABLE_CHANGES or key in ("", "out", "name") or given == then:
            continue
        if given != getattr(defaults, f.name):
            flag = "--" + {"datasets": "dataset", "params": "param"}.get(key, key).replace("_", "-")
            raise GradpromError(f"--resume continues '{req.name}' as it was started ({flag} {then}); "
                                f"drop {flag} {given} or start a new --name")
    if "***" in original.address and not req.address:
        raise GradpromError(f"'{req.name}' ran on {original.address}; credentials are never stored, so pass "
                            "--address again to resume it")
    return replace(original, out=req.out, name=req.name, resume=True, overwrite=False,
                   address=req.address or original.address, concurrency=req.concurrency or original.concurrency)


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
    manifest = prepare_folder(folder, req.resume, req.overwrite) or new_manifest(asdict(req))
    store = store_of(folder)
    if store is not None and req.overwrite:
        store.delete(OWNED)  # the local copy was replaced (proven gradprom's); so is what the store held
    manifest.update(status="running", driver=this_driver())
    manifest.pop("error", None)
    write_manifest(folder, manifest)
    progress = {"trials": [], "epochs": [], "started": False}

    def on_sigterm() -> None:
        if progress["started"]:
            manifest.update(status="interrupted")
            write_manifest(folder, manifest)
        console.print(f"SIGTERM: stopping the search and saving what finished (a second signal stops at once); "
                      f"continue later with: {again_command(req, resume=progress['started'])}", highlight=False,
                      markup=False, soft_wrap=True)

    try:
        with sigterm_as_interrupt(on_sigterm):
            front = run_studies(req, studies, folder, console, progress)
    except KeyboardInterrupt:  # a signal outside Tune's loop (reading data, the reference, between studies)
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
    trials = progress["trials"]
    manifest.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), trials=len(trials))
    write_manifest(folder, manifest)
    summarize(trials, front, folder, console, studies[-1].objectives)
    check_some_finished(trials, req.datasets, folder)
    return folder


def complete_request(req: SearchRequest) -> SearchRequest:
    """The request as it will run: the original one for --resume, defaults filled in, the name and the
    address checked (an unreachable cluster must not wait forever, so the address comes first)."""
    if req.resume and req.overwrite:
        raise GradpromError("--resume and --overwrite contradict each other; pick one")
    if req.resume:
        req = resumed_request(req)
    else:
        req.space = req.space or pipeline_info(req.pipeline or DEFAULT_PIPELINE)["spaces"][0]
        req.datasets = req.datasets or [DEFAULT_DATASET]
        if req.space.endswith(".json"):  # a user's space file: kept by absolute path, so --resume finds it
            req.space = str(Path(req.space).expanduser().resolve())
        label = Path(req.space).stem if req.space.endswith(".json") else req.space
        req.name = req.name or f"{label}-{'_'.join(req.datasets)}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_name(req.name)
    env_address = os.environ.get("RAY_ADDRESS", "")
    if not req.address and env_address and not env_address.startswith("http"):
        req.address = env_address  # inside a Ray Job (`gradprom cluster submit`): the job's own cluster
    if req.address and not ray_initialized():
        req.address = check_address(req.address)
    if not req.concurrency and not req.address:
        req.concurrency = max(1, int(local_cpus() // (req.cpus_per_trial * req.workers_per_trial)))
    return req


def local_cpus() -> int:
    return os.cpu_count() or 1


def run_studies(req: SearchRequest, studies: list[StudyPlan], folder: Path, console: Console,
                progress: dict[str, Any]) -> list[dict]:
    """Start (or reach) Ray and run each study in turn, writing the results after each; returns the last front.
    `progress` collects the rows and says whether a trial has started (for the manifest if this raises)."""
    from gradprom.orchestrator.optuna_search import study_storage

    if req.storage:  # reach the study database now: an unreachable one is bad input, found before any work
        study_storage(folder, req.storage)
    front: list[dict] = []
    if not req.address and not ray_initialized():
        own_process_group()
    with ray_runtime(req.address, None if req.address else local_cpus()):
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
                                       waiting=waiting)
            progress["trials"] += t_rows
            progress["epochs"] += e_rows
            front = write_results(folder, progress["trials"], progress["epochs"], study.objectives)
            if not req.storage and (folder / JOURNAL).is_file():
                publish(folder, JOURNAL)
            unfinished = sum(t["status"] == "interrupted" for t in t_rows) + max(0, req.trials - len(t_rows))
            if unfinished:
                raise interrupted(req, folder, f"search interrupted with {unfinished} of {req.trials} trials of "
                                  f"{study.dataset} unfinished; finished trials are saved in {folder}")
    return front


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


#: set once this driver got SIGTERM (so the exit code says 143, not 130)
TERMINATED = threading.Event()
#: seconds a SIGTERM'd driver has to stop its trials before it exits regardless ($GRADPROM_SIGTERM_GRACE_S)
SIGTERM_GRACE_S = 25.0


@contextmanager
def sigterm_as_interrupt(on_first: Callable[[], None] = lambda: None) -> Iterator[None]:
    """While the search runs, SIGTERM (timeout, Slurm, Kubernetes, a spot VM's shutdown) does what Ctrl-C does:
    the first stops the trials cleanly and saves what finished, a second stops at once. The signal is handed
    to whatever handles Ctrl-C at that moment (Tune's handler inside its loop, else Python's KeyboardInterrupt).

    `on_first` runs at the first SIGTERM (the manifest says `interrupted` before anything else can fail: where the
    whole machine is going down, Ray's own processes get the signal too), and a watchdog ends the driver with
    exit code 143 if the orderly stop has not finished within the grace period.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    grace = float(os.environ.get("GRADPROM_SIGTERM_GRACE_S") or SIGTERM_GRACE_S)
    watchdog = threading.Timer(grace, os._exit, args=(143,))
    watchdog.daemon = True

    def on_sigterm(signum: int, frame: Any) -> None:
        if not TERMINATED.is_set():
            TERMINATED.set()
            on_first()
            watchdog.start()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGTERM, previous)


def own_process_group() -> None:
    """Move this driver into a process group of its own before it starts Ray locally, so a signal sent to the group
    it was started in (`timeout`, a supervisor's killpg) reaches the driver, which stops the trials and Ray in order,
    and not Ray's processes, which would die under it. Only where no terminal job control is lost: not when this
    process already leads its group, nor when its group is a terminal's foreground group (Ctrl-C must reach it)."""
    if os.getpgrp() == os.getpid():
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp():
            return
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def check_some_finished(trials: list[dict], datasets: list[str], folder: Path) -> None:
    """Raise SearchFailed (exit 1) when a dataset's study has no trial that finished (completed or stopped early
    by the scheduler): a search whose every trial failed must not look like a success to a script."""
    for dataset in datasets:
        mine = [t for t in trials if t["dataset"] == dataset]
        if mine and not any(t["status"] in ("completed", "stopped_early") for t in mine):
            raise SearchFailed(f"all {len(mine)} trial(s) of {dataset} failed (the first: {mine[0]['error']}); "
                               f"nothing to rank: fix what the error says and search again (their rows are in "
                               f"{folder / 'trials.parquet'})")


def place_on_gpus(req: SearchRequest) -> None:
    """--device auto/cuda: give each trial worker a GPU when the cluster has GPUs and none was asked for."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if req.device == "cuda" and gpus == 0 and not req.address:
        raise GradpromError("--device cuda was asked for but Ray sees no GPU here; use --device cpu or auto")
    if req.gpus_per_trial == 0 and req.device in ("auto", "cuda") and gpus > 0:
        req.gpus_per_trial = 1.0  # a trial without a GPU share sees none (Ray hides them), so auto means CPU


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
