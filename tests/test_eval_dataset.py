"""Dataset options from the command line (--data-option) and cross-dataset evaluation (--eval-dataset)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from gradprom.datasets import DATASETS, TaskData, get_dataset, parse_dataset_options, register_dataset
from gradprom.errors import GradpromError
from gradprom.trainables.build import dataset_options
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import preflight, train_trial

if "synthetic_twin" not in DATASETS:
    @register_dataset("synthetic_twin", tasks=("classification",), help="synthetic classes, other images (tests)")
    def synthetic_twin(task: str, image_size: int, seed: int) -> TaskData:
        data = get_dataset("synthetic", task=task, image_size=image_size, seed=seed + 500, n_train=64, n_val=32,
                           n_test=32)
        data.name = "synthetic_twin"
        return data


def test_dataset_options_are_typed_by_their_defaults() -> None:
    assert parse_dataset_options("lizard", ["patch_size=16", "val_fold=1", "test_fold=2"]) == \
        {"patch_size": 16, "val_fold": 1, "test_fold": 2}
    assert parse_dataset_options("camus", ["views=4CH", "phases=ED,ES"]) == {"views": "4CH", "phases": "ED,ES"}
    assert parse_dataset_options("synthetic", []) == {}


@pytest.mark.parametrize(("name", "pairs", "message"), [
    ("lizard", ["patch_size=big"], "option patch_size must be int, got 'big'"),
    ("lizard", ["fold=2"], "has no option 'fold'. Did you mean 'val_fold'? Its options: patch_size (default 0), "
     "val_fold"),
    ("camus", ["views"], "--data-option 'views' is not KEY=VALUE"),
    ("camus", ["n_train=5"], "'n_train' is not a --data-option: set it with -p n_train=N"),
    ("isic2018", ["data_root=/x"], "set it with --data-root"),
    ("covid_ct", ["skip_bad=true"], "set it with --skip-bad"),
])
def test_bad_dataset_options_are_one_line(name: str, pairs: list[str], message: str) -> None:
    with pytest.raises(GradpromError, match=re.escape(message)):
        parse_dataset_options(name, pairs)


def test_config_checks_data_options_and_eval_dataset() -> None:
    with pytest.raises(GradpromError, match="data_options must be a JSON object"):
        check_config(TrialConfig(data_options="views=4CH"))
    with pytest.raises(GradpromError, match="data_options must be a JSON object"):
        check_config(TrialConfig(data_options="[1, 2]"))
    with pytest.raises(GradpromError, match="has no option 'views'"):
        check_config(TrialConfig(data_options='{"views": "4CH"}'))  # synthetic has no views
    with pytest.raises(GradpromError, match="is the training dataset"):
        check_config(TrialConfig(eval_dataset="synthetic"))
    with pytest.raises(GradpromError, match="Did you mean 'lizard'"):
        check_config(TrialConfig(eval_dataset="lizzard"))
    with pytest.raises(GradpromError, match="eval dataset 'lizard' has no task 'classification'"):
        check_config(TrialConfig(eval_dataset="lizard"))


def test_dataset_options_pass_data_settings_only_to_datasets_that_take_them(tmp_path: Path) -> None:
    synthetic = TrialConfig(n_train=8, skip_bad=True, cache_dir=str(tmp_path))
    assert dataset_options(synthetic) == {"n_train": 8}
    lizard = TrialConfig(dataset="lizard", task="segmentation", data_root="/data", skip_bad=True,
                         cache_dir=str(tmp_path), data_options=json.dumps({"patch_size": 64}))
    assert dataset_options(lizard) == {"patch_size": 64, "data_root": "/data", "skip_bad": True,
                                       "cache_dir": str(tmp_path)}
    assert dataset_options(lizard, counts=(1, 1, 1), cache=False)["cache_dir"] == ""
    eval_cfg = TrialConfig(dataset="isic2018", task="segmentation", n_train=8, eval_dataset="lizard",
                           data_options="{}").eval_config()
    assert eval_cfg is not None and eval_cfg.dataset == "lizard" and eval_cfg.n_train == 0
    assert eval_cfg.eval_dataset == "" and TrialConfig().eval_config() is None


def test_eval_on_a_dataset_with_the_same_classes_scores_both_recognizers(tiny: dict) -> None:
    final = train_trial({**tiny, "eval_dataset": "synthetic_twin"})
    for key in ("eval_psnr", "eval_ssim", "eval_psnr_input", "eval_acc", "eval_acc_ref"):
        assert math.isfinite(final[key]), key
    assert 0 <= final["eval_acc"] <= 1 and 0 <= final["eval_acc_ref"] <= 1
    assert final["eval_psnr"] != final["test_psnr"]  # other images, not the training dataset's test split
    assert final["eval_psnr_input"] < final["eval_psnr"] + 10


def test_eval_across_datasets_with_other_classes_uses_their_reference(tiny: dict, tmp_path: Path) -> None:
    from tests.fixtures.isic2018 import make_task1
    from tests.fixtures.lizard import make_lizard

    make_task1(tmp_path / "isic2018", "Training", 20, 0, np.random.default_rng(0))
    make_lizard(tmp_path)
    settings = {**tiny, "dataset": "isic2018", "task": "segmentation", "data_root": str(tmp_path),
                "eval_dataset": "lizard", "n_train": 0, "n_val": 0, "n_test": 0, "batch_size": 4}
    final = train_trial(settings)
    assert 0 <= final["eval_miou_ref"] <= 1 and math.isfinite(final["eval_psnr"])
    assert "eval_miou" not in final  # lizard's 7 nucleus classes are not ISIC's lesion/background


def test_eval_dataset_must_have_the_same_channels(tiny: dict, tmp_path: Path) -> None:
    from tests.fixtures.camus import make_2023
    from tests.fixtures.isic2018 import make_task1

    make_2023(tmp_path)
    make_task1(tmp_path / "isic2018", "Training", 20, 0, np.random.default_rng(0))
    cfg = TrialConfig.from_dict({**tiny, "dataset": "camus", "task": "segmentation", "data_root": str(tmp_path),
                                 "eval_dataset": "isic2018"})
    with pytest.raises(GradpromError, match="eval dataset 'isic2018' has 3-channel images but 'camus' has 1"):
        preflight(cfg)
