"""What `gradprom search` (and `protocol`) was asked, checked before anything runs.

`plan` reads top to bottom as small named checks: the budget, the scheduling, the resources, the datasets, then
(where the data is here) the storage, the warm start and one image through each extreme of the space. A request
that passes is one `StudyPlan` per dataset. `check_offline` is the part a machine that only submits the search to a
cluster can check; `complete_request` fills the defaults (or, for --resume, reads the request the search was
started with).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gradprom.analysis.pareto import OBJECTIVES, Objective, as_objectives, parse_objectives
from gradprom.datasets import TASKS, dataset_options_json
from gradprom.errors import GradpromError, unknown_name
from gradprom.keyvalue import split_pair
from gradprom.results.experiment import check_name, read_manifest
from gradprom.results.parquet import TRIALS, read_rows
from gradprom.results.storage import local_folder
from gradprom.search.nodes import check_address
from gradprom.search.runtime import ray_initialized
from gradprom.search.schedulers import SCHEDULERS, check_rungs
from gradprom.search.searcher import check_sampler, check_storage_url
from gradprom.search_spaces import SearchSpace, apply_overrides, load_space
from gradprom.search_spaces.protocol import load_protocol
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import DEFAULT as DEFAULT_PIPELINE
from gradprom.trainables.pipeline import pipeline_info, preflight

DEFAULT_DATASET = "synthetic"


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
    sampler: str = "gp"
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
    mlflow: str = ""  # an MLflow tracking URI (empty: $MLFLOW_TRACKING_URI, else no tracking)
    fidelity_check: int = 0  # asha / pareto-asha: trials run fully to measure the first rung's ρ first (0: off)
    min_rho: float = 0.5  # the rank correlation every objective's first rung needs before the scheduler is trusted

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


def plan(req: SearchRequest, data: bool = True) -> list[StudyPlan]:
    """Validate the whole request and build one StudyPlan per dataset; raises GradpromError on bad input.

    Every option that needs no data is checked first, for every dataset; then (with `data`) one image goes through
    each extreme of the space and the largest batch is checked against the training split. Without `data` (a job
    about to be submitted to a cluster, whose data and files are there, not here) only the first part runs."""
    check_budget(req)
    check_scheduling(req)
    check_resources(req)
    check_datasets(req)
    if data:
        check_inputs(req)
    plans = [study_plan(req, dataset) for dataset in req.datasets]
    for study in plans if data else []:
        for endpoint in study.space.endpoints():
            preflight(TrialConfig.from_dict({**study.base, **endpoint}))
        check_batch_fits(study.space, study.base, req.workers_per_trial)
        check_measurable(study)
    return plans


def check_budget(req: SearchRequest) -> None:
    if req.trials < 1:
        raise GradpromError(f"--trials must be ≥ 1, got {req.trials}")
    if req.epochs < 1:
        raise GradpromError(f"--epochs must be ≥ 1, got {req.epochs}")


def check_scheduling(req: SearchRequest) -> None:
    """The sampler, the scheduler and its rungs, each against its one list or range."""
    check_sampler(req.sampler)
    if req.scheduler not in SCHEDULERS:
        raise unknown_name("scheduler", req.scheduler, SCHEDULERS, option="--scheduler")
    check_rungs(req.grace_period, req.reduction_factor, req.tiebreak, req.max_t, req.epochs)
    if req.fidelity_check:
        check_ranges(("--fidelity-check", req.fidelity_check, 3 <= req.fidelity_check <= req.trials,
                      f"0 (off) or 3…--trials ({req.trials}): a rank correlation needs three trials"),
                     ("--min-rho", req.min_rho, -1 <= req.min_rho <= 1, "in -1…1"))
        if req.scheduler == "fifo":
            raise GradpromError("--fidelity-check measures an early-stopping scheduler's first rung; fifo stops "
                                "nothing: add --scheduler pareto-asha (or asha)")
        if req.grace_period >= req.epochs:
            raise GradpromError(f"--fidelity-check compares epoch {req.grace_period} (--grace-period) with the last; "
                                f"it needs --grace-period below --epochs ({req.epochs})")


def check_resources(req: SearchRequest) -> None:
    """What each trial holds and how many run: in range, and (on this machine's own Ray) within its CPUs."""
    check_ranges(("--max-failures", req.max_failures, req.max_failures >= 0, "≥ 0"),
                 ("--cpus-per-trial", req.cpus_per_trial, req.cpus_per_trial > 0, "> 0"),
                 ("--gpus-per-trial", req.gpus_per_trial, req.gpus_per_trial >= 0, "≥ 0"),
                 ("--workers-per-trial", req.workers_per_trial, req.workers_per_trial >= 1, "≥ 1"),
                 ("--concurrency", req.concurrency, req.concurrency >= 0, "≥ 0 (0 fills the CPUs)"))
    parse_resources(req.trial_resources)
    if not req.address and req.cpus_per_trial * req.workers_per_trial > local_cpus():
        raise GradpromError(f"a trial needs {req.cpus_per_trial * req.workers_per_trial:g} CPUs (--cpus-per-trial × "
                            f"--workers-per-trial) but this machine has {local_cpus()}; lower them, or run on a "
                            "cluster with --address")


def check_ranges(*rules: tuple[str, float, bool, str]) -> None:
    """(flag, value, holds, the rule in words) for each: the first that does not hold is one line."""
    for flag, value, holds, rule in rules:
        if not holds:
            raise GradpromError(f"{flag} must be {rule}, got {value:g}")


def check_datasets(req: SearchRequest) -> None:
    if not req.datasets:
        raise GradpromError("--dataset names no dataset; e.g. --dataset synthetic")
    if len(set(req.datasets)) != len(req.datasets):
        raise GradpromError(f"--dataset lists a dataset twice ({','.join(req.datasets)}); name each once")


def check_inputs(req: SearchRequest) -> None:
    """What the search reads besides its data: the study storage's URL and the experiment it warm-starts from
    (read now: a missing or foreign one is one line before anything runs)."""
    if req.storage:
        check_storage_url(req.storage)
    if req.warm_start:
        read_rows(local_folder(req.warm_start) / TRIALS)


def study_plan(req: SearchRequest, dataset: str) -> StudyPlan:
    """One dataset's study: its space (the protocol's grid, or the named space with --param applied), the settings
    every trial shares (each endpoint's names checked), and the objectives."""
    protocol = load_protocol(req.protocol, req.quick, req.protocol_seeds) if req.protocol else None
    space = protocol_space(req, protocol.space()) if protocol else \
        apply_overrides(load_space(req.space, req.task), list(req.params), req.settings)
    if "epochs" in space.params:
        raise GradpromError("epochs is the trial budget and cannot be searched; fix it with --epochs")
    if not space.params:
        raise GradpromError(f"space '{req.space}' has nothing left to search after --param; "
                            "use `gradprom train` for a single configuration")
    pipeline = pipeline_of(req, space)
    base = {"pipeline": pipeline, "dataset": dataset, "task": req.task, "epochs": req.epochs, "seed": req.seed,
            "device": req.device, "threads": max(1, int(req.cpus_per_trial)), "skip_bad": req.skip_bad,
            "eval_dataset": req.eval_dataset, **packing_bound(req.gpus_per_trial), **space.fixed}
    if req.data_options:
        base["data_options"] = dataset_options_json(dataset, list(req.data_options))
    for endpoint in space.endpoints():
        check_config(TrialConfig.from_dict({**base, **endpoint}))
    objectives = parse_objectives(req.objectives or ",".join(pipeline_info(pipeline).objectives),
                                  known=epoch_metrics(req.task, pipeline))
    if req.metric not in {*OBJECTIVES, "ssim", *(n for n, _ in objectives)}:
        raise GradpromError(f"--metric must be psnr, ssim, task_metric or one of --objectives, got '{req.metric}'")
    return StudyPlan(dataset, space, base, objectives, protocol.cells() if protocol else [])


def protocol_space(req: SearchRequest, space: SearchSpace) -> SearchSpace:
    """A protocol's grid is fixed: --param may only fix the settings it leaves alone."""
    if req.params or req.settings:
        given = apply_overrides(SearchSpace("--param", ""), list(req.params), req.settings)
        clash = sorted(set(space.params) & {*given.fixed, *given.params})
        if clash or given.params:
            raise GradpromError(f"--param {(clash or sorted(given.params))[0]}: a protocol's grid is fixed; "
                                "--param may only fix settings it leaves alone (KEY=VALUE)")
        space.fixed.update(given.fixed)
    return space


def check_offline(req: SearchRequest) -> None:
    """What can be checked of a search or protocol on a machine that only submits it (`gradprom cluster submit`):
    its names, ranges and spaces, none of its data, files or cluster. --resume is the cluster's to check."""
    if req.resume:
        return
    req.space = req.space or pipeline_info(req.pipeline or DEFAULT_PIPELINE).spaces[0]
    req.datasets = req.datasets or [DEFAULT_DATASET]
    if req.name:
        check_name(req.name)
    plan(replace(req, address=req.address or "cluster"), data=False)


def epoch_metrics(task: str, pipeline: str = DEFAULT_PIPELINE) -> list[str]:
    """The numeric figures every trial of `task` reports each epoch on the validation split (the pipeline's
    metrics, less the other task's): what a search may optimise (`--objectives`)."""
    other = ("dice", "miou") if task == "classification" else ("acc",)  # the other task's figures
    return [m for m in pipeline_info(pipeline).metrics if not m.startswith(other)]


def pipeline_of(req: SearchRequest, space: SearchSpace) -> str:
    """The request's pipeline: --pipeline, else the one its space fixes, else the default; never two."""
    fixed = space.fixed.get("pipeline", "")
    if req.pipeline and fixed and req.pipeline != fixed:
        raise GradpromError(f"space '{space.name}' is for pipeline '{fixed}', not '{req.pipeline}'; pick one of "
                            f"'{req.pipeline}''s spaces ({', '.join(pipeline_info(req.pipeline).spaces)})")
    name = req.pipeline or fixed or DEFAULT_PIPELINE
    if req.task in TASKS and req.task not in pipeline_info(name).tasks:  # an unknown task: preflight says so
        raise GradpromError(f"pipeline '{name}' trains on {', '.join(pipeline_info(name).tasks)}, not "
                            f"'{req.task}'; pick --task {pipeline_info(name).tasks[0]}")
    return name


def parse_resources(items: list[str]) -> list[tuple[str, float]]:
    """`--trial-resource NAME=AMOUNT` values as (name, amount) pairs: custom Ray node resources each trial
    worker holds (e.g. a node label such as `A100=1`, or a share of one: `gradprom_worker=0.5`)."""
    found = []
    for item in items:
        message = (f"--trial-resource '{item}' is not NAME=AMOUNT with a custom resource name and an amount > 0 "
                   "(CPUs and GPUs have --cpus-per-trial/--gpus-per-trial)")
        name, amount = split_pair(item, message)
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not value > 0 or name in ("CPU", "GPU", "memory"):
            raise GradpromError(message)
        found.append((name, value))
    return found


def packing_bound(gpus_per_trial: float) -> dict[str, float]:
    """Trials packed on a GPU (a share below 1) each get that share of its memory as a hard bound, so one
    trial's peak cannot push the others out of memory; `-p gpu_memory_fraction=F` sets another."""
    return {"gpu_memory_fraction": gpus_per_trial} if 0 < gpus_per_trial < 1 else {}


def check_measurable(study: StudyPlan) -> None:
    """An objective scored against clean images (psnr, ssim) is NaN on a folder of scans whose validation split has
    no clean twin, and every trial would fail the study: say so before Ray starts, and what to rank on instead."""
    from gradprom.datasets.disk import clean_twins
    from gradprom.trainables.build import dataset_options

    against_clean = [n for n, _ in study.objectives if n in ("psnr", "ssim")]
    if not against_clean:
        return
    cfg = TrialConfig.from_dict(study.base)
    twins = clean_twins(cfg.dataset, task=cfg.task, image_size=cfg.image_size, seed=cfg.seed,
                        **dataset_options(cfg, cache=False))
    if twins is not None and twins[1] == 0:
        raise GradpromError(f"--objectives {against_clean[0]}: dataset '{cfg.dataset}' has no clean twin for any "
                            "validation scan, so it cannot be measured; rank on the self-supervised loss instead "
                            "(--objectives loss_image,task_metric) or add clean twins under clean/val/")


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


def complete_request(req: SearchRequest) -> SearchRequest:
    """The request as it will run: the original one for --resume, defaults filled in, the name and the
    address checked (an unreachable cluster must not wait forever, so the address comes first)."""
    if req.resume and req.overwrite:
        raise GradpromError("--resume and --overwrite contradict each other; pick one")
    if req.resume:
        req = resumed_request(req)
    else:
        req.space = req.space or pipeline_info(req.pipeline or DEFAULT_PIPELINE).spaces[0]
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
