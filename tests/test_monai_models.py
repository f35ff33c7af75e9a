"""MONAI's networks by name: each curated one trains inside a real trial and resumes bit-identically; the gradient
strategies' updates with a MONAI enhancer equal an independent autograd computation; bad arguments are one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gradprom.errors import GradpromError
from gradprom.models import create_model
from gradprom.models.monai_nets import NETS, PREFIX
from gradprom.strategies import get_strategy
from gradprom.trainables.build import build_trial, seeded_generator
from gradprom.trainables.checkpoint import CHECKPOINT_FILE, load_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import train_trial
from gradprom.trainables.step import output_layer, train_step
from tests.fixtures.settings import TINY

#: the classifiers' own widths narrowed (same blocks and depth) so a CPU trains them in a test's time
NARROW = {"resnet18": "widen_factor=0.25", "resnet34": "widen_factor=0.25", "DenseNet121": "growth_rate=8"}
SMALL = {**TINY, "n_train": 8, "n_val": 4, "n_test": 4, "batch_size": 4, "enhancer_channels": 4}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


def run(settings: dict, keep: Path, resume_from: str | None = None) -> list[dict]:
    """The trial's reports; each epoch's checkpoint copied to keep/epochN."""
    reports = []

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        reports.append(metrics)
        if checkpoint_dir:
            (keep / f"epoch{metrics['epoch']}").mkdir(parents=True)
            (keep / f"epoch{metrics['epoch']}" / CHECKPOINT_FILE).write_bytes(
                (Path(checkpoint_dir) / CHECKPOINT_FILE).read_bytes())

    train_trial(settings, report, resume_from=resume_from)
    return reports


@pytest.mark.parametrize("net", NETS, ids=lambda n: f"{n.role}-{n.name}")
def test_each_listed_network_trains_in_a_trial_and_resumes_bit_identically(net, cache: str, tmp_path: Path) -> None:
    """Two epochs straight, and one epoch then a resume from its checkpoint (weights_only), end on the very same
    weights of enhancer and recognizer; the recognizer trains (joint) and both update."""
    role = {"enhancer": PREFIX + net.name} if net.role == "enhancer" else {
        "recognizer": PREFIX + net.name, "recognizer_args": NARROW.get(net.name, "")}
    settings = {**SMALL, **role, "task": net.task or "classification", "strategy": "joint", "epochs": 2,
                "recognizer_init": "scratch", "cache_dir": cache, "max_steps_per_epoch": 1}
    full = run(settings, tmp_path / "full")
    resumed = run(settings, tmp_path / "resumed", resume_from=str(tmp_path / "full" / "epoch1"))
    assert [r["epoch"] for r in resumed] == [2]
    a, b = load_checkpoint(tmp_path / "full" / "epoch2"), load_checkpoint(tmp_path / "resumed" / "epoch2")
    first = load_checkpoint(tmp_path / "full" / "epoch1")
    for part in ("enhancer", "recognizer"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
        assert any(not torch.equal(a[part][k], first[part][k]) for k in a[part]), f"{part} never moved"
    assert full[-1]["psnr"] == resumed[-1]["psnr"] and full[-1]["task_metric"] == resumed[-1]["task_metric"]


@pytest.mark.parametrize("name", ["enhancer_only", "joint", "frozen", "gradprom", "threshold", "gradprom_soft",
                                  "pcgrad"])
def test_each_strategys_update_with_a_monai_enhancer_is_exact(name: str, cache: str) -> None:
    """The step's update of a MONAI BasicUNet enhancer (SGD, lr 1) equals the strategy's combination of g_ip and
    g_vr computed plainly: two full backward passes through copies of the models."""
    cfg = TrialConfig.from_dict({**SMALL, "enhancer": "monai:BasicUNet", "strategy": name, "lam": 0.7,
                                 "threshold": -0.2, "cache_dir": cache, "pretrain_epochs": 1})
    trial = build_trial(cfg)
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    if trial.opt_recognizer is not None:
        trial.opt_recognizer = torch.optim.SGD(trial.recognizer.parameters(), lr=1.0)
    x, y = trial.data.train.images[:4], trial.data.train.targets[:4]
    enhancer, recognizer = copy.deepcopy(trial.enhancer), copy.deepcopy(trial.recognizer)
    x_hat = enhancer(trial.degradation(x, seeded_generator(x.device, 5)))
    F.l1_loss(x_hat, x).backward(retain_graph=True)
    g_ip = [p.grad.clone() for p in enhancer.parameters()]
    enhancer.zero_grad()
    F.cross_entropy(recognizer(x_hat), y).backward()
    g_vr = [p.grad.clone() for p in enhancer.parameters()]
    before = [p.detach().clone() for p in trial.enhancer.parameters()]
    train_step(trial, x, y, seeded_generator(x.device, 5))
    options = {**({"lam": 0.7} if name != "enhancer_only" else {}), **({"threshold": -0.2} if name == "threshold"
                                                                        else {})}
    expected = get_strategy(name, **options).combine(g_ip, g_vr)
    for b, p, e in zip(before, trial.enhancer.parameters(), expected, strict=True):
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-4, atol=1e-6)


def test_a_monai_enhancer_restores_and_gates_on_its_output_layer() -> None:
    """x + net(x), starting near the identity; gate_on=head gates on the output convolution, or on the module a
    user names (head_layer), with a did-you-mean for a wrong name."""
    enhancer = create_model("monai:BasicUNet", in_channels=1, channels=4)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert enhancer(x).shape == x.shape and float((enhancer(x) - x).abs().mean()) < 0.05
    final = enhancer.net.final_conv
    assert [id(p) for p in output_layer(enhancer)] == [id(p) for p in final.parameters(recurse=False)]
    assert float(final.bias.abs().max()) == 0.0
    named = create_model("monai:BasicUNet", in_channels=1, channels=4, head_layer="upcat_1.convs.conv_1.conv")
    assert [id(p) for p in output_layer(named)] == [
        id(p) for p in named.net.upcat_1.convs.conv_1.conv.parameters(recurse=False)]
    with pytest.raises(GradpromError, match="head_layer 'final_cnv' is not a module of BasicUNet. Did you mean "
                                            "'final_conv'"):
        create_model("monai:BasicUNet", in_channels=1, head_layer="final_cnv")


@pytest.mark.parametrize(("name", "args", "message"), [
    ("monai:BasicUNet", {"feature": (4, 4, 8, 16, 32, 4)}, "has no option 'feature'. Did you mean 'features'"),
    ("monai:DenseNet121", {"pretrained": True}, "pretrained=True would download weights"),
    ("monai:UNet", {"spatial_dims": 3}, "spatial_dims is filled from the dataset"),
    ("monai:SegResNet", {"init_filters": 6}, "cannot be built with"),
])
def test_bad_network_arguments_are_one_line(name: str, args: dict, message: str) -> None:
    with pytest.raises(GradpromError, match=message) as info:
        create_model(name, in_channels=1, num_classes=3, **args)
    assert "\n" not in str(info.value)


def test_network_arguments_come_from_the_trial_settings(cache: str) -> None:
    """recognizer_args and enhancer_args reach the networks, and a super-resolving degradation is refused."""
    cfg = TrialConfig.from_dict({**SMALL, "enhancer": "monai:BasicUNet", "enhancer_args": "features=2,2,4,8,16,2",
                                 "recognizer": "monai:DenseNet121",
                                 "recognizer_args": "init_features=8 growth_rate=4 block_config=1,1,1,1",
                                 "cache_dir": cache, "pretrain_epochs": 1})
    trial = build_trial(cfg)
    assert trial.enhancer.net.conv_0.conv_0.conv.out_channels == 2
    assert trial.recognizer.features.conv0.out_channels == 8
    with pytest.raises(GradpromError, match="restores at scale 1; for super-resolution .* use srresnet or sesr"):
        create_model("monai:UNet", in_channels=1, scale=2)
