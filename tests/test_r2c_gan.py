"""The restore-to-classify GAN pipeline (`r2c_gan`): its networks, losses, data, metrics, checkpoints and trials."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradprom.datasets import dataset_info, get_dataset, synthetic
from gradprom.datasets.check import check_dataset
from gradprom.datasets.unpaired import UnpairedData
from gradprom.errors import DataMissing, GradpromError
from gradprom.metrics import classification_metrics, confusion_matrix
from gradprom.models.r2c import Discriminator, Generator
from gradprom.search_spaces import load_space
from gradprom.trainables import TrialConfig, pipeline_info, preflight, train_trial
from gradprom.trainables import r2c_gan as r2c
from gradprom.trainables.r2c_data import FakePool, gan_data

SMALL = {"pipeline": "r2c_gan", "image_size": 32, "n_train": 48, "n_val": 16, "n_test": 16, "batch_size": 8,
         "epochs": 2, "gan_channels": 8, "device": "cpu", "threads": 1, "fake_pool": 4}
CLOCK = ("time_", "wall_s", "step_ms", "images_per_s", "resumed_from")
CLASS_COLUMNS = ("acc", "sensitivity", "specificity", "precision", "f1", "f2")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """These small convolutions run fastest on one thread (a second one only waits on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- networks -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", ["operational", "conv"])
def test_generator_and_discriminator_shapes_and_gradients(layers: str) -> None:
    torch.manual_seed(0)
    g, d = Generator(1, 3, channels=6, q=3, layers=layers), Discriminator(1, channels=6, q=3, layers=layers)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    image, logits = g(x)
    assert image.shape == x.shape and logits.shape == (2, 3)
    assert image.abs().max() <= 1  # a tanh output: the [-1, 1] image range
    scores = d(x)
    assert scores.shape == (2, 1, 8, 8)  # a patch map, S/4 per side with stride 2 at layer 2
    (image.square().mean() + logits.logsumexp(1).mean() + scores.mean()).backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert Discriminator(1, 4, stride=4)(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 8, 8)  # the paper's stride
    with pytest.raises(GradpromError, match="even"):
        g(torch.zeros(1, 1, 31, 31))
    with pytest.raises(GradpromError, match="gan_layers"):
        Generator(1, 2, layers="dense")


def test_the_class_head_reads_the_label_bearing_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train the head a short while on clean synthetic images (the label lives in how 1-2 px spots and curves are
    arranged), then remove exactly those structures from held-out images (same seed, so the organ, texture,
    grain and blur are identical): the head must beat chance with them and fall to chance without them."""
    size, n_val = 48, 256
    data = get_dataset("synthetic", image_size=size, seed=0, n_train=1024, n_val=n_val, n_test=16)
    structures = synthetic._structures

    def without_detail(rng: np.random.Generator, labels: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
        delta, finding = structures(rng, labels, s)  # the same draws, so every other pixel stays as it was
        return np.zeros_like(delta), finding

    monkeypatch.setattr(synthetic, "_structures", without_detail)
    bare = get_dataset("synthetic", image_size=size, seed=0, n_train=1024, n_val=n_val, n_test=16)
    assert torch.equal(bare.val.targets, data.val.targets)
    assert (bare.val.images - data.val.images).abs().mean() < 0.03  # only the fine structures differ

    torch.manual_seed(0)
    g = Generator(1, 3, channels=16, layers="conv")
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    x, y = data.train.images * 2 - 1, data.train.targets
    for _ in range(200):
        idx = torch.randint(len(x), (32,), generator=gen)
        loss = F.cross_entropy(g(x[idx])[1], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        seen = g(data.val.images * 2 - 1)[1].argmax(1)
        blind = g(bare.val.images * 2 - 1)[1].argmax(1)
    acc_seen = (seen == data.val.targets).float().mean().item()
    acc_blind = (blind == data.val.targets).float().mean().item()
    assert acc_seen > 0.5, acc_seen  # chance is 1/3
    assert acc_blind < 0.42 and acc_seen - acc_blind > 0.15, (acc_seen, acc_blind)
    assert (seen != blind).float().mean() > 0.4


# ---- losses and steps -----------------------------------------------------------------------------------------

def test_gan_steps_lower_the_cycle_and_classification_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrialConfig.from_dict({**SMALL, "n_train": 192, "epochs": 3, "lr_g": 1e-3, "lr_d": 1e-3,
                                 "decay_start": 1.0, "cache_dir": ""})
    t, _ = r2c.build_gan(cfg)
    seen: list[dict[str, torch.Tensor]] = []
    step = r2c.gan_step
    monkeypatch.setattr(r2c, "gan_step", lambda *a: seen.append(step(*a)) or seen[-1])
    for epoch in (1, 2, 3):
        r2c.train_epoch(t, epoch)
    assert len(seen) == 36 and t.steps_done == 36
    for key in ("loss_cycle", "loss_cls", "loss_identity"):
        first, last = (torch.stack([s[key] for s in part]).mean().item() for part in (seen[:6], seen[-6:]))
        assert last < 0.95 * first, (key, first, last)


def test_rate_is_constant_then_decays_linearly_to_zero() -> None:
    cfg = TrialConfig(decay_start=0.5)
    factors = [r2c.rate_factor(cfg, s, 10) for s in range(10)]
    assert factors[:5] == [1.0] * 5 and factors[5:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert [r2c.rate_factor(TrialConfig(decay_start=1.0), s, 4) for s in range(4)] == [1.0] * 4


def test_fake_pool_fills_then_swaps_half_the_time_and_round_trips() -> None:
    pool = FakePool(3)
    gen = torch.Generator().manual_seed(0)
    first = torch.arange(3.0).view(3, 1)
    assert torch.equal(pool.query(first, gen), first) and pool.count == 3  # filling: shown as they come
    shown = pool.query(torch.full((400, 1), 9.0), gen)
    old = (shown != 9).sum().item()
    assert 0 < old <= 3  # an old fake is shown only once, replaced by the new one
    state = pool.state_dict()
    again = FakePool(3)
    again.load_state_dict(state, torch.device("cpu"))
    assert torch.equal(again.images, pool.images) and again.count == 3
    assert torch.equal(FakePool(0).query(first, gen), first)  # off


def test_the_pools_are_disjoint_halves_and_deterministic() -> None:
    cfg = TrialConfig.from_dict({**SMALL, "n_train": 32, "cache_dir": ""})
    data = get_dataset("synthetic", image_size=32, seed=0, n_train=32, n_val=16, n_test=16)
    d = gan_data(cfg, data)
    assert len(d.poor) == len(d.good) == 16
    good = {next(i for i in range(32) if torch.equal(img, data.train.images[i])) for img in d.good}
    # each poor image is a degraded training image: its source is the nearest clean one, never in the good pool
    poor = {int((data.train.images - img).square().flatten(1).sum(1).argmin()) for img in d.poor}
    assert len(good) == len(poor) == 16 and not good & poor and good | poor == set(range(32))
    again = gan_data(cfg, data)
    assert torch.equal(again.poor, d.poor) and torch.equal(again.good, d.good)
    assert torch.equal(d.val.clean, data.val.images) and not torch.equal(d.val.inputs, data.val.images)


# ---- metrics --------------------------------------------------------------------------------------------------

def test_binary_metrics_by_hand() -> None:
    pred = torch.tensor([0] * 5 + [1] + [0] * 2 + [1] * 4)  # TN 5, FP 1, FN 2, TP 4 (class 1 positive)
    target = torch.tensor([0] * 6 + [1] * 6)
    m = classification_metrics(confusion_matrix(pred, target, 2))
    p, r = 4 / 5, 4 / 6
    assert m == pytest.approx({"acc": 9 / 12, "sensitivity": r, "specificity": 5 / 6, "precision": p,
                               "f1": 2 * p * r / (p + r), "f2": 5 * p * r / (4 * p + r)})
    never = classification_metrics(torch.tensor([[3, 0], [2, 0]]))  # the positive class is never predicted
    assert never == {"acc": 0.6, "sensitivity": 0.0, "specificity": 1.0, "precision": 0.0, "f1": 0.0, "f2": 0.0}
    assert set(classification_metrics(torch.zeros(2, 2, dtype=torch.long)).values()) == {0.0}


def test_multiclass_metrics_are_one_vs_rest_macro_averages() -> None:
    cm = torch.tensor([[5, 2, 0], [1, 3, 1], [0, 0, 0]])  # class 2 never occurs nor is predicted
    per = []
    for c in range(3):  # scikit-learn's per-class definitions (zero_division=0), averaged with equal weights
        tp = int(cm[c, c])
        fp, fn = int(cm[:, c].sum()) - tp, int(cm[c].sum()) - tp
        tn = int(cm.sum()) - tp - fp - fn
        prec, rec = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f2 = 5 * prec * rec / (4 * prec + rec) if prec + rec else 0.0
        per.append((rec, tn / (tn + fp) if tn + fp else 0.0, prec, f1, f2))
    want = dict(zip(("sensitivity", "specificity", "precision", "f1", "f2"), np.mean(per, axis=0), strict=True))
    assert classification_metrics(cm) == pytest.approx({"acc": 8 / 12, **want})
    with pytest.raises(ValueError, match="square"):
        classification_metrics(torch.zeros(2, 3))


# ---- the r2c_release folders ----------------------------------------------------------------------------------

def write_release(root: Path, bad: bool = False) -> dict[int, tuple[int, int]]:
    """A tiny release: square 16 px constant PNGs, each of its own grey value → (label, pool)."""
    from PIL import Image

    files = {"trainA": [("covid", 6), ("normal", 6)], "trainB": [("COVID", 4), ("normal", 4)],
             "testA": [("covid", 3), ("normal", 3)]}
    values: dict[int, tuple[int, int]] = {}
    value = 10
    for folder, groups in files.items():
        for cls, n in groups:
            for i in range(n):
                path = root / "r2c_release" / folder / cls / f"{cls}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)
                values[value] = (int(cls.lower() == "covid"), int(folder == "trainB"))
                value += 3
    if bad:
        (root / "r2c_release" / "trainB" / "normal" / "broken.png").write_bytes(b"not a png")
    return values


def identify(images: torch.Tensor) -> list[int]:
    return [round(float(img.mean()) * 255) for img in images]


def test_release_loader_labels_from_paths_and_keeps_the_pools(tmp_path: Path) -> None:
    values = write_release(tmp_path)
    data = get_dataset("r2c_release", image_size=16, seed=0, data_root=str(tmp_path))
    assert isinstance(data, UnpairedData) and data.class_names == ["normal", "covid"] and data.channels == 1
    assert (len(data.train), len(data.val), len(data.test)) == (11 + 8, 1, 6)  # 10% of trainA carved for val
    for split, pools in ((data.train, data.pools), (data.val, None), (data.test, None)):
        for v, label, pool in zip(identify(split.images), split.targets.tolist(),
                                  (pools.tolist() if pools is not None else [0] * len(split)), strict=True):
            assert values[v] == (label, pool)
    assert data.to("cpu").pools.tolist() == data.pools.tolist()
    assert dataset_info("r2c_release")["tasks"] == ("classification",)

    report = check_dataset("r2c_release", data_root=str(tmp_path), image_size=16)  # plain labels, per split
    assert report.ok and sum(report.counts[0].per_class["train"]) == 19


def test_release_bad_files_and_missing_folders_are_one_line(tmp_path: Path) -> None:
    values = write_release(tmp_path, bad=True)
    with pytest.raises(GradpromError, match="broken.png") as exc:
        get_dataset("r2c_release", image_size=16, data_root=str(tmp_path))
    assert "\n" not in str(exc.value)
    data = get_dataset("r2c_release", image_size=16, data_root=str(tmp_path), skip_bad=True)
    assert len(data.skipped) == 1 and len(data.train) == 19  # the pools stay attached to the right images
    assert [values[v][1] for v in identify(data.train.images)] == data.pools.tolist()

    shutil.rmtree(tmp_path / "r2c_release" / "testA")
    with pytest.raises(GradpromError, match="testA is missing.*trainA/ .*trainB/ .*testA/") as exc:
        get_dataset("r2c_release", image_size=16, data_root=str(tmp_path))
    assert "\n" not in str(exc.value)
    with pytest.raises(DataMissing, match="r2c_release' not found"):
        get_dataset("r2c_release", image_size=16, data_root=str(tmp_path / "nothing"))


def test_a_trial_on_the_release_has_no_psnr_but_scores_its_classifier(tmp_path: Path) -> None:
    write_release(tmp_path)
    out = train_trial({**SMALL, "dataset": "r2c_release", "data_root": str(tmp_path), "image_size": 16,
                       "batch_size": 4, "epochs": 1, "cache_dir": str(tmp_path / "cache")})
    assert math.isnan(out["psnr"]) and math.isnan(out["ssim"]) and math.isnan(out["test_psnr"])
    assert 0 <= out["test_f1"] <= 1 and out["task_metric"] == out["f1"] and out["steps"] == 2  # 11 poor // 4


# ---- trials ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """One uninterrupted 2-epoch trial: its config, its reports, and a copy of its epoch-1 checkpoint."""
    root = tmp_path_factory.mktemp("r2c")
    cfg = {**SMALL, "cache_dir": str(root / "cache")}
    reports: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        reports.append(metrics)
        if metrics["epoch"] == 1:
            shutil.copytree(checkpoint, root / "epoch1")

    train_trial(cfg, report)
    return cfg, reports, root / "epoch1"


def test_train_trial_reports_every_column(two_epochs: tuple[dict[str, Any], list[dict[str, Any]], Path]) -> None:
    _, reports, _ = two_epochs
    assert [r["epoch"] for r in reports] == [1, 2]
    last = reports[-1]
    for key in ("psnr", "ssim", "task_metric", "psnr_input", *CLASS_COLUMNS, *r2c.LOSSES):
        assert math.isfinite(last[key]), key
        if key != "task_metric":
            assert key in pipeline_info("r2c_gan").metrics, key
        if key in ("psnr", "ssim", "task_metric", *CLASS_COLUMNS):
            assert math.isfinite(last[f"test_{key}"]), key
    assert last["task_metric"] == last["f1"] and last["test_task_metric"] == last["test_f1"]
    assert not any(k.startswith("test_") for k in reports[0])
    assert last["data_fingerprint"] and last["steps"] == 3 and last["schema_version"]  # 24 poor images // 8


def test_a_resumed_trial_is_bit_identical(two_epochs: tuple[dict[str, Any], list[dict[str, Any]], Path]) -> None:
    cfg, reports, checkpoint = two_epochs
    resumed: list[dict[str, Any]] = []
    train_trial(cfg, lambda m, _c: resumed.append(m), resume_from=checkpoint)
    assert [r["epoch"] for r in resumed] == [2] and resumed[0]["resumed_from"] == 1
    want, got = reports[1], resumed[0]
    differ = {k: (got.get(k), v) for k, v in want.items() if not k.startswith(CLOCK) and got.get(k) != v}
    assert not differ


def test_a_task_driven_checkpoint_is_refused(tmp_path: Path) -> None:
    from gradprom.trainables.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {"epoch": 1, "metrics": {}})
    with pytest.raises(GradpromError, match="not r2c_gan"):
        train_trial({**SMALL, "epochs": 1, "cache_dir": str(tmp_path / "c")}, resume_from=tmp_path)


def test_preflight_checks_the_config_in_one_line(tmp_path: Path) -> None:
    ok = TrialConfig.from_dict({**SMALL, "cache_dir": str(tmp_path)})
    assert preflight(ok) is ok
    for change, message in (({"task": "segmentation"}, "task must be classification"),
                            ({"batch_size": 30}, "larger than r2c_gan's poor-quality pool"),
                            ({"aux_task": "segmentation"}, "r2c_gan has no aux_task")):
        with pytest.raises(GradpromError, match=message):
            preflight(TrialConfig.from_dict({**SMALL, **change, "cache_dir": str(tmp_path)}))
    with pytest.raises(GradpromError, match="gan_layers must be one of operational, conv"):
        TrialConfig(gan_layers="dense")


def test_the_space_and_the_settings() -> None:
    space = load_space("r2c_weights")
    assert space.fixed == {"pipeline": "r2c_gan"}
    assert {"w_cycle", "w_identity", "w_cls", "w_adv", "onn_q", "lr_g", "lr_d"} == set(space.params)
    assert "r2c_weights" in pipeline_info("r2c_gan").spaces
    defaults = TrialConfig()
    assert (defaults.pipeline, defaults.lr, defaults.lr_g, defaults.w_cycle, defaults.onn_q) == \
        ("task_driven", 1e-3, 2e-4, 10.0, 3)
    for bad in ({"onn_q": 0}, {"w_cls": -0.1}, {"decay_start": 1.5}, {"beta1": 1.0}, {"fake_pool": -1},
                {"lr_d": 0.0}):
        with pytest.raises(GradpromError, match=next(iter(bad))):
            TrialConfig.from_dict(bad)


def test_the_space_picks_the_pipeline_and_a_contrary_flag_is_one_line() -> None:
    """r2c_weights is r2c_gan's space: a search of it runs r2c_gan without --pipeline (end to end through the CLI in
    test_pipelines_e2e), with --pipeline r2c_gan alike, and --pipeline task_driven is refused."""
    from gradprom.search.request import SearchRequest, pipeline_of
    from gradprom.search_spaces import load_space

    space = load_space("r2c_weights", "classification")
    assert pipeline_of(SearchRequest(), space) == "r2c_gan"
    assert pipeline_of(SearchRequest(pipeline="r2c_gan"), space) == "r2c_gan"
    with pytest.raises(GradpromError, match="space 'r2c_weights' is for pipeline 'r2c_gan', not 'task_driven'"):
        pipeline_of(SearchRequest(pipeline="task_driven"), space)
