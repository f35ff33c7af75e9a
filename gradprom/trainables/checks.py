"""A trial's settings checked against every registry (pipeline, strategy and its options, dataset and task, models,
degradation), so a typo fails before Ray starts, not inside a trial. Kept apart from the config record, which every
part reads, so that the record imports no registry."""

from __future__ import annotations

from gradprom.datasets import DATASETS, dataset_info, parse_degradation
from gradprom.errors import GradpromError
from gradprom.models import MODELS
from gradprom.strategies import strategy_options
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.image_loss import IMAGE_LOSSES
from gradprom.trainables.pipeline import PIPELINES


def check_config(cfg: TrialConfig) -> TrialConfig:
    """Check the names against the registries (strategy and its options, dataset and task, models,
    degradation); returns `cfg`."""
    pipeline = PIPELINES.meta(cfg.pipeline)
    if DATASETS.meta(cfg.dataset).unpaired and not pipeline.unpaired:
        takes = ", ".join(PIPELINES.names(lambda m: m.unpaired)) or "none"
        raise GradpromError(f"dataset '{cfg.dataset}' is unpaired (no clean target for an image), which pipeline "
                            f"'{cfg.pipeline}' cannot train on; pipelines for unpaired data: {takes}")
    strategy = cfg.build_strategy()
    unused = [k for k, off in (("ema", 0.0), ("gate_every", 1), ("gate_on", "all"))
              if getattr(cfg, k) != off and k not in strategy_options(cfg.strategy)]
    if unused:
        raise GradpromError(f"strategy '{cfg.strategy}' has no gate to set {', '.join(unused)} on; they apply "
                            "to threshold, gradprom and gradprom_soft")
    tasks = dataset_info(cfg.dataset)["tasks"]
    if cfg.task not in tasks:
        raise GradpromError(f"dataset '{cfg.dataset}' has no task '{cfg.task}'; its tasks: {', '.join(tasks)}")
    cfg.dataset_options()
    if cfg.aux_task:
        if cfg.aux_task == cfg.task or cfg.aux_task not in tasks:
            raise GradpromError(f"aux_task must be another task of dataset '{cfg.dataset}' than '{cfg.task}' "
                                f"(its tasks: {', '.join(tasks)}), got '{cfg.aux_task}'")
        if not strategy.uses_aux_gradient:
            raise GradpromError(f"aux_task needs a strategy that uses the recognizers' gradients (not "
                                f"enhancer_only); got {strategy.describe()}")
    if cfg.eval_dataset:
        if cfg.eval_dataset == cfg.dataset:
            raise GradpromError(f"eval_dataset '{cfg.eval_dataset}' is the training dataset, whose test split is "
                                "scored already; name another dataset")
        try:
            tasks = dataset_info(cfg.eval_dataset)["tasks"]
        except GradpromError as exc:  # say which option named it: the training dataset has a flag too
            raise GradpromError(f"--eval-dataset: {exc}") from None
        if cfg.task not in tasks:
            raise GradpromError(f"eval dataset '{cfg.eval_dataset}' has no task '{cfg.task}'; its tasks: "
                                f"{', '.join(tasks)}")
    degradation = parse_degradation(cfg.degradation)
    loss = IMAGE_LOSSES.meta(cfg.loss_ip)  # unknown name: a did-you-mean
    observes = DATASETS.meta(cfg.dataset).observes
    if observes is not None and observes(cfg.dataset_options()) and (cfg.clean_targets or degradation.name != "none"):
        raise GradpromError(f"dataset '{cfg.dataset}' holds scans as acquired, with no clean training target: train "
                            "on them with -p clean_targets=false -p loss_ip=neighbor2neighbor --degradation none "
                            "(or read its files as clean images with --data-option scans=false)")
    if not cfg.clean_targets and not pipeline.observations:
        honour = ", ".join(PIPELINES.names(lambda m: m.observations))
        raise GradpromError(f"pipeline '{cfg.pipeline}' trains on clean images; clean_targets=false needs one that "
                            f"trains on observations alone: {honour}")
    if not cfg.clean_targets and loss.supervised:
        unsupervised = ", ".join(IMAGE_LOSSES.names(lambda m: not m.supervised))
        raise GradpromError(f"loss_ip={cfg.loss_ip} compares with clean images, which clean_targets=false never "
                            f"reads; pick a self-supervised one: {unsupervised}")
    if not cfg.clean_targets and degradation.scale != 1:
        raise GradpromError(f"clean_targets=false trains on the observations alone, which '{cfg.degradation}' makes "
                            "smaller than the targets; the self-supervised losses denoise: use a scale-1 degradation")
    for model in (cfg.enhancer, cfg.recognizer):
        if model:
            MODELS.get(model)
    return cfg
