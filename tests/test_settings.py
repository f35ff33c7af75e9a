"""Trial settings owned by the parts that read them: declared once with type, default and range, checked by one
function, searchable with -p, refused with one line. Registries take one decorator with typed metadata."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from gradprom.datasets import Split, TaskData, dataset_options_json, register_dataset
from gradprom.errors import GradpromError
from gradprom.search_spaces import SearchSpace, apply_overrides, load_space, register_space
from gradprom.settings import Setting, declare, owner_of
from gradprom.strategies import Strategy, get_strategy, register_strategy
from gradprom.strategies.base import GRANULARITY, LAM
from gradprom.trainables.build import dataset_options
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from tests.fixtures.cli import gradprom
from tests.fixtures.registries import restored_registries

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("setting", "value", "want"), [
    (Setting("x", 1.0, "h", above=0), 2, 2.0),  # an int where a float is declared becomes that float
    (Setting("x", 1, "h", low=1), 3.0, 3),  # an integral float where an int is declared becomes that int
    (Setting("x", 0.0, "h", low=-1, high=1), -1, -1.0),  # inclusive bounds include their ends
    (Setting("x", "a", "h", choices=("a", "b")), "b", "b"),
    (Setting("x", False, "h"), True, True),
])
def test_a_value_in_range_comes_back_as_the_declared_type(setting: Setting, value: object, want: object) -> None:
    got = setting.check(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(("setting", "value", "message"), [
    (Setting("x", 1.0, "the x", above=0), 0, "x must be > 0, got 0.0 (the x)"),
    (Setting("x", 1.0, "the x", above=0), math.inf, "x must be a finite number > 0, got inf (the x)"),
    (Setting("x", 1.0, "the x", above=0), math.nan, "x must be a finite number > 0, got nan (the x)"),
    (Setting("x", 1.0, "the x"), True, "x must be a number, got True"),
    (Setting("x", 1, "the x", low=1), 1.5, "x must be an integer, got 1.5"),
    (Setting("x", 1, "the x", low=1), 0, "x must be ≥ 1, got 0 (the x)"),
    (Setting("x", 0.0, "the x", low=0, below=1), 1.0, "x must be in [0, 1), got 1.0 (the x)"),
    (Setting("x", 0.5, "the x", above=0, high=1), 0.0, "x must be in (0, 1], got 0.0 (the x)"),
    (Setting("x", 0.0, "the x", high=2), 3, "x must be ≤ 2, got 3.0 (the x)"),
    (Setting("x", "a", "the x", choices=("a", "b")), "c", "x must be one of a, b, got 'c' (the x)"),
    (Setting("x", "a", "the x"), 3, "x must be text, got 3"),
])
def test_a_bad_value_is_one_line_saying_what_it_must_be(setting: Setting, value: object, message: str) -> None:
    with pytest.raises(GradpromError) as err:
        setting.check(value)
    assert str(err.value) == message


def test_each_setting_is_owned_by_the_part_that_reads_it() -> None:
    assert owner_of("epochs") == owner_of("dataset") == "every trial"
    assert owner_of("w_adv") == owner_of("onn_q") == "pipeline 'r2c_gan'"
    assert owner_of("vjp") == "pipeline 'task_driven'"
    assert owner_of("lam").startswith("strategy '") and owner_of("threshold").startswith("strategy '")
    columns = TrialConfig().to_dict()
    assert {"w_adv", "vjp", "lam", "threshold", "ema"} <= set(columns)  # rows stay flat: one column each
    assert TrialConfig(pipeline="r2c_gan", w_adv=2).w_adv == 2.0


def test_two_different_declarations_of_one_name_are_refused_either_way() -> None:
    with restored_registries():
        with pytest.raises(GradpromError, match="setting 'lam' is declared differently by strategy '"):
            declare("test", (Setting("lam", 2.0, "another λ"),))
        with pytest.raises(GradpromError, match="setting 'epochs' is declared differently by every trial"):
            declare("test", (Setting("epochs", 3, "more epochs"),))
        declare("test", (LAM,))  # sharing the declaration is how several strategies take lam


def test_a_strategy_with_a_setting_of_its_own_is_built_checked_and_searched() -> None:
    """The plugin's way: declare the setting when registering; its constructor takes it with the same default."""
    share = Setting("share_t", 0.5, "the share", above=0, high=1)
    with restored_registries():
        @register_strategy("share_t", settings=(LAM, GRANULARITY, share))
        class Share(Strategy):
            def __init__(self, lam: float = 1.0, granularity: str = "global", share_t: float = 0.5) -> None:
                super().__init__(lam=lam, granularity=granularity)
                self.share_t = share_t

            def weights(self, cos: torch.Tensor) -> torch.Tensor:
                return torch.full_like(cos, self.share_t)

        cfg = TrialConfig(strategy="share_t", share_t=0.25, lam=2.0)
        built = check_config(cfg).build_strategy()
        assert isinstance(built, Share) and built.share_t == 0.25 and built.lam == 2.0
        g_ip, g_vr = [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 4.0])]
        torch.testing.assert_close(built.combine(g_ip, g_vr)[0], torch.tensor([1.0, 2.0]))  # 1·g_ip + 2·0.25·g_vr
        assert TrialConfig().share_t == 0.5 and "share_t" in TrialConfig().to_dict()
        with pytest.raises(GradpromError, match=r"share_t must be in \(0, 1\], got 1.5"):
            TrialConfig(strategy="share_t", share_t=1.5)
        with pytest.raises(GradpromError, match=r"share_t must be in \(0, 1\], got 0.0"):
            get_strategy("share_t", share_t=0)  # by hand, the same check
        space = apply_overrides(SearchSpace("s", ""), ["strategy=share_t", "share_t=0.2:0.8"])
        assert space.params["share_t"] == {"type": "float", "low": 0.2, "high": 0.8, "log": False}
        with pytest.raises(GradpromError, match=r"share_t must be in \(0, 1\], got 0.0"):
            apply_overrides(SearchSpace("s", ""), ["strategy=share_t", "share_t=0:0.8"])  # each endpoint checked
    with pytest.raises(GradpromError, match="unknown trial setting 'share_t'"):
        TrialConfig(share_t=0.3)  # gone with its strategy


def test_a_strategy_whose_options_are_not_its_settings_is_refused() -> None:
    with restored_registries():
        class Odd(Strategy):
            def __init__(self, lam: float = 1.0, granularity: str = "global", odd: int = 1) -> None:
                super().__init__(lam=lam, granularity=granularity)

        with pytest.raises(GradpromError, match="strategy 'odd': its constructor's options .* must be its settings"):
            register_strategy("odd")(Odd)
        with pytest.raises(GradpromError, match="must be its settings"):  # same names, different default
            register_strategy("odd", settings=(LAM, GRANULARITY, Setting("odd", 2, "odd", low=0)))(Odd)


def test_a_dataset_setting_reaches_its_factory_and_is_no_data_option() -> None:
    with restored_registries():
        @register_dataset("_test_bright", tasks=("classification",), help="a plugin's dataset with a setting",
                          settings=(Setting("brightness_t", 1.0, "scales the images", above=0),))
        def bright(task: str, image_size: int, seed: int, brightness_t: float = 1.0) -> TaskData:
            split = Split(torch.full((4, 1, image_size, image_size), 0.25 * brightness_t), torch.zeros(4).long())
            return TaskData("_test_bright", task, 2, 1, image_size, ["a", "b"], split, split, split)

        cfg = TrialConfig(dataset="_test_bright", brightness_t=2.0, image_size=16)
        assert dataset_options(cfg)["brightness_t"] == 2.0
        with pytest.raises(GradpromError, match="'brightness_t' is not a --data-option: set it with -p brightness_t"):
            dataset_options_json("_test_bright", ["brightness_t=2"])


def test_an_unpaired_dataset_is_refused_by_a_pipeline_that_needs_clean_targets() -> None:
    with pytest.raises(GradpromError, match="dataset 'r2c_release' is unpaired .* pipelines for unpaired data: "
                                            "r2c_gan"):
        check_config(TrialConfig(dataset="r2c_release"))


def test_a_registered_space_loads_like_a_shipped_one() -> None:
    with restored_registries():
        @register_space("_test_space", help="λ only")
        def space() -> dict:
            return {"description": "λ only", "fixed": {"strategy": "gradprom"},
                    "params": {"lam": {"type": "float", "low": 0.1, "high": 1.0, "log": True}}}

        loaded = load_space("_test_space")
        assert loaded.fixed == {"strategy": "gradprom"} and loaded.params["lam"]["high"] == 1.0
        with pytest.raises(GradpromError, match=r"unknown metadata key of search space '_x' 'description'"):
            register_space("_x", description="the wrong key")


def test_gradprom_settings_lists_a_plugins_setting_with_its_owner(shared_cache: str) -> None:
    ran = gradprom("settings", cache=shared_cache, GRADPROM_PLUGINS="tests.fixtures.plugin_example",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), COLUMNS="250")
    assert ran.returncode == 0, ran.stderr
    rows = {line.split("│")[1].strip(): line for line in ran.stdout.splitlines() if line.count("│") > 3}
    assert "strategy 'half_promotion'" in rows["share"] and "(0, 1]" in rows["share"]
    assert "pipeline 'r2c_gan'" in rows["w_adv"] and "every trial" in rows["epochs"]
