"""What the commands share: each option defined once (flag, default, help), the one route from those flags to
trial settings, and the console.

An option is a module-level `typer.Option` used as the default of a parameter (`precision: str = PRECISION`),
so a flag that means the same in `search`, `protocol` and `train` reads the same in each one's `--help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()


def echo(text: str) -> None:
    """Text that is not ours (logs, rendered configs): printed as is, never wrapped or styled."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def split_names(text: str) -> list[str]:
    """`a, b,c` → ['a', 'b', 'c'] (a comma-separated list of names; empty items dropped)."""
    return [p.strip() for p in text.split(",") if p.strip()]


# --- what the trials run on ---------------------------------------------------------------------------------
DATASET = typer.Option("synthetic", help="Dataset name.")
TASK = typer.Option("classification", help="classification or segmentation.")
EPOCHS = typer.Option(6, help="Epochs per trial (the full budget; a protocol's quick form fixes its own).")
SEED = typer.Option(0, help="Seed of data and models (and of a search's Optuna sampler).")
DATA_ROOT = typer.Option("", help="Folder holding the real datasets (one folder each); default $GRADPROM_DATA.")
DATA_OPTION = typer.Option([], "--data-option", "-o",
                           help="A dataset's own option, KEY=VALUE (e.g. views=4CH, patch_size=256).")
SKIP_BAD = typer.Option(False, help="Leave unreadable or inconsistent data files out (and say how many) instead of "
                                    "stopping at the first.")
EVAL_DATASET = typer.Option("", help="Also score each trial's final enhancer on this dataset's test split (eval_* "
                                     "columns); the second dataset a cross-domain protocol scores.")
DEGRADATION = typer.Option("", help="Degradation, e.g. gaussian:sigma=0.15 (default of the trial).")
PIPELINE = typer.Option("", help="Pipeline, the kind of trial (see `gradprom pipelines`): task_driven (the default, "
                                 "or the space's own) or r2c_gan.")
ENHANCER = typer.Option("", help="Enhancer model (see `gradprom models`), e.g. srresnet, the semantic-guided sesr or "
                                 "monai:BasicUNet (default of the trial or the space).")
RECOGNIZER = typer.Option("", help="Recognizer model (see `gradprom models`), e.g. monai:DenseNet121 or "
                                   "monai:SegResNet; default the task's own (resnet / unet).")

# --- how each trial computes --------------------------------------------------------------------------------
DEVICE = typer.Option("auto", help="auto, cpu or cuda.")
PRECISION = typer.Option("auto", help="Forward passes: auto (bf16 autocast on a CUDA GPU, fp32 on the CPU), fp32 or "
                                      "bf16; gradients and the gate stay fp32.")
COMPILE = typer.Option("off", "--compile", help="torch.compile the models: off, inductor or aot_eager.")
NAN_POLICY = typer.Option("fail", help="fail: a NaN/inf loss or gradient fails the trial; skip-step: skip such steps "
                                       "and count them (nan_skips).")

# --- where experiments run and land -------------------------------------------------------------------------
OUT = typer.Option("results", help="Folder that holds experiments (OUT/NAME).")
ADDRESS = typer.Option("", help="Ray cluster: the head's GCS address HEAD:6379, ray://HEAD:10001 (Ray Client) or "
                                "auto; checked first, with bounded waits. Empty starts Ray locally.")
CONCURRENCY = typer.Option(0, help="Trials at once; 0 fills the local CPUs (or lets Ray decide).")
CPUS_PER_TRIAL = typer.Option(1.0, help="CPUs per trial worker (fractions allowed).")
RESUME = typer.Option(False, help="Continue the experiment OUT/NAME.")
OVERWRITE = typer.Option(False, help="Replace the experiment OUT/NAME.")
MLFLOW = typer.Option("", "--mlflow", help="Also track it in MLflow: a tracking URI, e.g. sqlite:///mlruns.db (default "
                                           "$MLFLOW_TRACKING_URI; off when neither is set).")


#: trial settings given by a flag of their own, by their TrialConfig name (the rest have SearchRequest fields)
SETTING_FLAGS = {"data_root": DATA_ROOT, "nan_policy": NAN_POLICY, "precision": PRECISION, "compile": COMPILE,
                 "degradation": DEGRADATION, "enhancer": ENHANCER, "recognizer": RECOGNIZER}


def trial_settings(**given: Any) -> dict[str, Any]:
    """The trial settings flags give, e.g. `trial_settings(precision=precision, data_root=data_root)`: one route
    for `train` (into its TrialConfig) and `search`/`protocol` (SearchRequest.settings, fixed in every trial).
    Keys are TrialConfig's names; a flag left at its default is left out, so the space's (or the trial's) own
    value stands; --data-root becomes an absolute path (trials may run in another folder)."""
    if given.get("data_root"):
        given["data_root"] = str(Path(given["data_root"]).expanduser().resolve())
    return {key: value for key, value in given.items() if value != SETTING_FLAGS[key].default}
