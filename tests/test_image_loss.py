"""Self-supervised image losses against independent computations on tiny tensors, and trials that never read a
clean training image: they still train, under every gradient path, and gain PSNR over their noisy input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from gradprom.datasets import Split, TaskData, get_dataset, register_dataset
from gradprom.errors import GradpromError
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.image_loss import (
    NEIGHBOUR_PAIRS,
    donut_mean,
    grid_mask,
    neighbor2neighbor,
    neighbour_subsamplers,
    noise2self,
    r2r,
    subsample,
)
from gradprom.trainables.pipeline import train_trial
from tests.fixtures.registries import restored_registries
from tests.fixtures.settings import TINY

OFFSETS = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}  # a 2×2 cell's positions, row by row


def by_loops(y: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The sub-image taking, in cell (i, j) of image b, the pixel at positions[b, i, j]: plain loops."""
    b, c, h, w = y.shape
    out = torch.empty(b, c, h // 2, w // 2)
    for n in range(b):
        for i in range(h // 2):
            for j in range(w // 2):
                di, dj = OFFSETS[int(positions[n, i, j])]
                out[n, :, i, j] = y[n, :, 2 * i + di, 2 * j + dj]
    return out


def test_neighbour_subsamplers_pick_two_adjacent_pixels_of_each_cell() -> None:
    y = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).view(2, 1, 4, 6)
    first, second = neighbour_subsamplers(y.shape, torch.Generator().manual_seed(7))
    pick = torch.randint(0, 8, (2, 2, 3), generator=torch.Generator().manual_seed(7))  # the same draw, by hand
    assert torch.equal(first, NEIGHBOUR_PAIRS[pick][..., 0]) and torch.equal(second, NEIGHBOUR_PAIRS[pick][..., 1])
    for a, b in zip(first.flatten().tolist(), second.flatten().tolist(), strict=True):
        (ra, ca), (rb, cb) = OFFSETS[a], OFFSETS[b]
        assert abs(ra - rb) + abs(ca - cb) == 1  # neighbours: one step apart, never the same pixel or a diagonal
    assert torch.equal(subsample(y, first), by_loops(y, first))
    assert torch.equal(subsample(y, second), by_loops(y, second))


def test_neighbor2neighbor_loss_by_hand() -> None:
    """f(z) = 2z, so f̄(y) = 2y and the loss is mean(d²) + γ·mean((d − (2·g1 y − 2·g2 y))²), d = 2·g1 y − g2 y."""
    y = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    loss, out = neighbor2neighbor(lambda z: 2 * z, y, 2 * y, None, torch.Generator().manual_seed(3), n2n_gamma=0.5)
    first, second = neighbour_subsamplers(y.shape, torch.Generator().manual_seed(3))
    g1, g2 = by_loops(y, first), by_loops(y, second)
    d = 2 * g1 - g2
    want = (d**2).mean() + 0.5 * ((d - (2 * g1 - 2 * g2)) ** 2).mean()
    assert float(loss) == pytest.approx(float(want), rel=1e-6) and torch.equal(out, 2 * g1)
    with pytest.raises(GradpromError, match="sides must be even"):
        neighbor2neighbor(lambda z: z, y[..., :3], y[..., :3], None, torch.Generator())


def test_noise2self_masks_a_grid_and_scores_only_it() -> None:
    """With f the identity, the prediction at a masked pixel is its neighbours' mean: the loss is the mean of
    (mean of 8 neighbours − pixel)² over the masked grid, computed here with explicit loops and reflection."""
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(5)
    loss, _ = noise2self(lambda z: z, y, y, None, gen, n2s_grid=4)
    phase = int(torch.randint(0, 16, (1,), generator=torch.Generator().manual_seed(5)).item())
    padded = torch.nn.functional.pad(y, (1, 1, 1, 1), mode="reflect")[0, 0]
    errors = []
    for i in range(8):
        for j in range(8):
            if (i % 4, j % 4) == divmod(phase, 4):
                ring = padded[i:i + 3, j:j + 3].sum() - padded[i + 1, j + 1]
                errors.append((ring / 8 - y[0, 0, i, j]) ** 2)
    assert len(errors) == 4 and float(loss) == pytest.approx(float(torch.stack(errors).mean()), rel=1e-5)
    mask = grid_mask(y.shape, 4, phase, y.device)
    assert int(mask.sum()) == 4 and torch.allclose(donut_mean(y)[mask.bool()], torch.stack(
        [(padded[i:i + 3, j:j + 3].sum() - padded[i + 1, j + 1]) / 8 for i in range(8) for j in range(8)
         if (i % 4, j % 4) == divmod(phase, 4)]))


def test_r2r_recorrupts_with_the_known_sigma() -> None:
    """f the identity: f(y + αz) − (y − z/α) = (α + 1/α)·z, z ~ N(0, σ²) from the generator."""
    y = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    loss, _ = r2r(lambda z: z, y, y, None, torch.Generator().manual_seed(9), r2r_alpha=0.5, r2r_sigma=0.1)
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(9)) * 0.1
    assert float(loss) == pytest.approx(float(((2.5 * z) ** 2).mean()), rel=1e-5)
    with pytest.raises(GradpromError, match="r2r needs the noise σ"):
        r2r(lambda z: z, y, y, None, torch.Generator(), r2r_sigma=0.0)


def test_settings_are_checked_before_anything_trains() -> None:
    with pytest.raises(GradpromError, match="loss_ip=l1 compares with clean images"):
        check_config(TrialConfig(clean_targets=False))
    with pytest.raises(GradpromError, match="unknown image loss 'noise2noise'. Did you mean 'noise2self'"):
        check_config(TrialConfig(loss_ip="noise2noise"))
    with pytest.raises(GradpromError, match="scale-1 degradation"):
        check_config(TrialConfig(clean_targets=False, loss_ip="r2r", degradation="downsample:scale=2"))
    with pytest.raises(GradpromError, match="pipeline 'r2c_gan' trains on clean images; .* task_driven"):
        check_config(TrialConfig(pipeline="r2c_gan", clean_targets=False, loss_ip="r2r"))


SELF_SUPERVISED = {**TINY, "image_size": 32, "n_train": 256, "n_val": 64, "n_test": 128, "enhancer_blocks": 2,
                   "enhancer_channels": 16, "epochs": 3, "lr": 3e-3, "clean_targets": False,
                   "degradation": "gaussian:sigma=0.1"}


@pytest.mark.parametrize("loss", ["neighbor2neighbor", "noise2self", "r2r"])
def test_each_loss_trains_an_enhancer_without_clean_targets(loss: str) -> None:
    """enhancer_only on σ = 0.1 observations, never a clean training image: the test images it enhances are
    clearer than its noisy input, and the no-reference validation loss is reported."""
    # Noise2Self learns from the masked quarter of the pixels only (grid 2): slower, measured +0.85 dB in 8 epochs
    # here where the others gain 1.5-3 dB in 3
    own, gain = ({"n2s_grid": 2, "epochs": 8}, 0.5) if loss == "noise2self" else ({}, 1.0)
    final = train_trial({**SELF_SUPERVISED, "loss_ip": loss, "strategy": "enhancer_only", **own})
    assert final["test_psnr"] > final["test_psnr_input"] + gain, (final["test_psnr"], final["test_psnr_input"])
    assert math.isfinite(final["loss_image"]) and math.isfinite(final["test_loss_image"])


@pytest.mark.parametrize("strategy", [{"strategy": "gradprom"}, {"strategy": "joint"},
                                      {"strategy": "gradprom", "gate_on": "head"},
                                      {"strategy": "threshold", "threshold": 0.1, "vjp": "batched"},
                                      {"strategy": "pcgrad", "granularity": "tensor"},
                                      {"strategy": "gradprom", "aux_task": "segmentation"}])
def test_every_gradient_path_takes_a_self_supervised_loss(strategy: dict) -> None:
    """g_ip is the gradient of Neighbor2Neighbor, measured through its own (half-size) forward: the exact two
    VJPs, one backward, the head gate, the batched VJPs and PCGrad all train to finite figures with a gate."""
    final = train_trial({**TINY, "clean_targets": False, "loss_ip": "neighbor2neighbor", "lam": 0.5, **strategy})
    assert math.isfinite(final["psnr"]) and math.isfinite(final["loss_ip"]) and math.isfinite(final["acc"])
    assert final["reference_trained_on"] == "observations"
    assert 0.0 <= final["promoted_frac"] <= 1.0


def test_clean_training_images_are_never_read(tmp_path) -> None:
    """A dataset of scans whose training split has only observations (its clean twins NaN): with clean_targets=false
    the trial trains to finite figures; with clean targets the NaN poisons its first step, so the test can fail."""
    with restored_registries():
        @register_dataset("_test_scans", tasks=("classification",), help="observations only, NaN clean twins")
        def scans(task: str, image_size: int, seed: int, n_train: int = 64, n_val: int = 32,
                  n_test: int = 32) -> TaskData:
            base = get_dataset("synthetic", task=task, image_size=image_size, seed=seed, n_train=n_train, n_val=n_val,
                               n_test=n_test)
            noisy = (base.train.images + 0.1 * torch.randn(base.train.images.shape,
                                                           generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
            train = Split(torch.full_like(base.train.images, math.nan), base.train.targets, observed=noisy)
            return TaskData("_test_scans", task, 3, 1, image_size, base.class_names, train, base.val, base.test)

        settings = {**TINY, "dataset": "_test_scans", "strategy": "gradprom", "cache_dir": str(tmp_path)}
        final = train_trial({**settings, "clean_targets": False, "loss_ip": "noise2self"})
        assert all(math.isfinite(final[k]) for k in ("psnr", "test_psnr", "acc", "acc_ref", "loss_ip"))
        with pytest.raises(Exception, match="non-finite"):
            train_trial({**settings, "cache_dir": str(tmp_path / "other")})


def test_the_self_supervised_protocol_groups_by_its_coupled_settings(tmp_path) -> None:
    """`self_supervised` couples loss_ip with clean_targets in one grid value (only those pairs run), and its
    evidence groups by the setting loss_ip, which rows keep in config_json (their `loss_ip` column is the training
    loss): two seeds of each strategy pair up within each image loss."""
    import json

    from gradprom.analysis.evidence import analyse
    from gradprom.search_spaces.protocol import load_protocol

    protocol = load_protocol("self_supervised")
    assert {(c["loss_ip"], c["clean_targets"]) for c in protocol.cells()} == {("l1", True),
                                                                             ("neighbor2neighbor", False)}
    rows = []
    for loss, clean in (("l1", True), ("neighbor2neighbor", False)):
        for strategy in ("frozen", "gradprom"):
            for seed in (0, 1):
                rows.append({"status": "completed", "strategy": strategy, "seed": seed, "task": "classification",
                             "clean_targets": clean, "loss_ip": 0.01 * (seed + 1),  # the training loss column
                             "config_json": json.dumps({"loss_ip": loss}),
                             "test_psnr": 20.0 + seed + (strategy == "gradprom"), "test_ssim": 0.5, "test_acc": 0.5,
                             "test_acc_ref": 0.4})
    _, comparisons, _ = analyse(protocol, rows)
    psnr = [c for c in comparisons
            if c["metric"] == "test_psnr" and (c["strategy"], c["baseline"]) == ("gradprom", "frozen")]
    assert sorted(c["group"] for c in psnr) == ["loss_ip=l1, clean_targets=True",
                                                "loss_ip=neighbor2neighbor, clean_targets=False"]
    assert all(c["n"] == 2 and c["mean_diff"] == pytest.approx(1.0) for c in psnr)


def test_a_search_caches_the_reference_its_trials_would_train(tmp_path) -> None:
    """Before trials start, the driver pretrains the reference under clean_targets=false on the observations, the
    very data a trial would train it on (not the clean images, which its cache key says it never saw)."""
    from rich.console import Console

    from gradprom.datasets import parse_degradation
    from gradprom.search.driver import prepare_reference
    from gradprom.trainables.build import build_data, degrade_fixed, seeded_generator
    from gradprom.trainables.reference import pretrained_recognizer

    base = {**SELF_SUPERVISED, "n_train": 64, "n_val": 16, "n_test": 16, "pretrain_epochs": 1, "batch_size": 16,
            "loss_ip": "neighbor2neighbor", "cache_dir": str(tmp_path / "search")}
    prepare_reference(base, Console(file=io.StringIO()))
    cfg = TrialConfig.from_dict(base)
    searched = pretrained_recognizer(cfg, build_data(cfg), torch.device("cpu"), reference=True)  # from the cache
    clean = build_data(cfg)
    noisy = degrade_fixed(parse_degradation(cfg.degradation), clean.train.images,
                          seeded_generator(torch.device("cpu"), cfg.seed, 606))  # the observations' stream
    on_observations = TaskData(**{**clean.__dict__, "train": Split(noisy, clean.train.targets)})
    fresh = replace_cache(cfg, tmp_path / "fresh")
    expected = pretrained_recognizer(fresh, on_observations, torch.device("cpu"), reference=True)
    on_clean = pretrained_recognizer(replace_cache(cfg, tmp_path / "clean"), clean, torch.device("cpu"),
                                     reference=True)
    for a, b in zip(searched.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(searched.state_dict().values(), on_clean.state_dict().values(),
                                                     strict=True))


def replace_cache(cfg: TrialConfig, folder) -> TrialConfig:
    return TrialConfig.from_dict({**cfg.to_dict(), "cache_dir": str(folder)})
