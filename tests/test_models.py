"""Model registry and architectures: shapes, errors, determinism, identity start, gradient flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprom.errors import GradpromError
from gradprom.models import (
    MODELS,
    ModelMeta,
    ResNet,
    SRResNet,
    UNet,
    create_model,
    default_recognizer,
    model_defaults,
    model_names,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_srresnet_shapes(scale: int, in_channels: int) -> None:
    m = create_model("srresnet", in_channels=in_channels, blocks=2, channels=8, scale=scale)
    out = m(torch.rand(2, in_channels, 12, 20))
    assert out.shape == (2, in_channels, 12 * scale, 20 * scale)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("depth", [10, 18, 34])
def test_resnet_shapes(depth: int) -> None:
    m = create_model("resnet", in_channels=3, num_classes=5, depth=depth, width=4)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    # Global average pooling: any size that survives three stride-2 stages works.
    assert m(torch.rand(2, 3, 48, 40)).shape == (2, 5)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_unet_shapes(depth: int) -> None:
    m = create_model("unet", in_channels=2, num_classes=4, depth=depth, width=4)
    assert m(torch.rand(2, 2, 32, 64)).shape == (2, 4, 32, 64)


def test_unet_rejects_indivisible_size_naming_sizes_that_work() -> None:
    m = create_model("unet", depth=3, width=4)
    m(torch.rand(1, 1, 24, 24))  # divisible by 8: fine
    with pytest.raises(GradpromError) as err:
        m(torch.rand(1, 1, 30, 32))
    msg = one_line(err)
    assert "divisible by 8" in msg and "30x32" in msg


def test_resnet_counts_blocks_like_torchvision() -> None:
    def blocks(m: nn.Module) -> int:
        return sum(1 for x in m.modules() if type(x).__name__ == "BasicBlock")

    assert [blocks(create_model("resnet", depth=d, width=2)) for d in (10, 18, 34)] == [4, 8, 16]


# --- registry and errors --------------------------------------------------------------------


def test_names_meta_and_defaults() -> None:
    assert model_names(role="enhancer") == ["monai:BasicUNet", "monai:SegResNet", "monai:UNet", "sesr", "srresnet"]
    assert model_names(role="recognizer") == ["monai:AttentionUnet", "monai:BasicUNet", "monai:DenseNet121",
                                              "monai:SEResNet50", "monai:SegResNet", "monai:UNet", "monai:resnet18",
                                              "monai:resnet34", "resnet", "unet"]
    assert model_names(task="classification") == ["monai:DenseNet121", "monai:SEResNet50", "monai:resnet18",
                                                  "monai:resnet34", "resnet"]
    assert model_names(role="recognizer", task="segmentation") == ["monai:AttentionUnet", "monai:BasicUNet",
                                                                   "monai:SegResNet", "monai:UNet", "unet"]
    assert set(model_names()) >= {"srresnet", "resnet", "unet"}
    assert MODELS.meta("srresnet").task is None
    assert all(MODELS.meta(n).help for n in model_names())
    assert model_defaults("srresnet") == {"in_channels": 1, "blocks": 8, "channels": 32, "scale": 1}
    assert model_defaults("resnet") == {"in_channels": 1, "num_classes": 3, "depth": 10, "width": 16}
    assert model_defaults("unet") == {"in_channels": 1, "num_classes": 3, "depth": 3, "width": 16}
    assert default_recognizer("classification") == "resnet"
    assert default_recognizer("segmentation") == "unet"
    assert isinstance(create_model("srresnet"), SRResNet)
    assert isinstance(create_model("resnet"), ResNet)
    assert isinstance(create_model("unet"), UNet)


def test_bad_role_and_task() -> None:
    with pytest.raises(GradpromError, match="Valid roles: enhancer, recognizer"):
        model_names(role="enhancers")
    with pytest.raises(GradpromError, match="classification, segmentation"):
        model_names(task="detection")
    with pytest.raises(GradpromError, match="classification, segmentation"):
        default_recognizer("detection")


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(GradpromError) as err:
        create_model("srresnt")
    msg = one_line(err)
    assert "Did you mean 'srresnet'" in msg
    assert "resnet, sesr, srresnet, unet" in msg
    with pytest.raises(GradpromError):
        model_defaults("nope")


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(GradpromError) as err:
        create_model("srresnet", block=4)
    msg = one_line(err)
    assert "'block'" in msg and "Did you mean 'blocks'" in msg
    assert "Its options: in_channels (default 1), blocks (default 8), channels (default 32), scale (default 1)" in msg


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("srresnet", {"blocks": 0}, "blocks must be an integer >= 1, got 0"),
        ("srresnet", {"channels": 0}, "channels must be an integer >= 1"),
        ("srresnet", {"in_channels": 0}, "in_channels must be an integer >= 1"),
        ("srresnet", {"scale": 3}, "scale must be one of 1, 2, 4, got 3"),
        ("srresnet", {"blocks": 2.5}, "blocks must be an integer"),
        ("srresnet", {"blocks": True}, "blocks must be an integer"),
        ("resnet", {"depth": 50}, "depth must be one of 10, 18, 34, got 50"),
        ("resnet", {"width": 0}, "width must be an integer >= 1"),
        ("resnet", {"num_classes": 1}, "num_classes must be an integer >= 2"),
        ("unet", {"depth": 0}, "depth must be an integer in 1..5, got 0"),
        ("unet", {"depth": 6}, "depth must be an integer in 1..5, got 6"),
        ("unet", {"width": -1}, "width must be an integer >= 1"),
    ],
)
def test_bad_option_values(name: str, kwargs: dict, expected: str) -> None:
    with pytest.raises(GradpromError) as err:
        create_model(name, **kwargs)
    msg = one_line(err)
    assert expected in msg and msg.startswith(name)


def test_user_registered_model_gets_the_same_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    def tiny(in_channels: int = 1, gain: float = 2.0) -> nn.Module:
        return nn.Conv2d(in_channels, in_channels, 1)

    # Patch the entries so the global registry is restored after the test.
    monkeypatch.setitem(MODELS._entries, "tiny", tiny)
    monkeypatch.setitem(MODELS._meta, "tiny", ModelMeta(role="enhancer", help="test"))
    assert "tiny" in model_names(role="enhancer")
    assert model_defaults("tiny") == {"in_channels": 1, "gain": 2.0}
    assert isinstance(create_model("tiny", in_channels=3), nn.Conv2d)
    with pytest.raises(GradpromError, match=r"Did you mean 'gain'\? Its options: in_channels "
                                                 r"\(default 1\), gain \(default 2.0\)"):
        create_model("tiny", gian=1.0)


def test_metadata_is_typed_and_unknown_keys_are_refused() -> None:
    """Each registry's metadata is a dataclass of its own: a misspelt key or a bad role fails at registration."""
    with pytest.raises(GradpromError, match=r"unknown metadata key of model 'x' 'rol'. Did you mean 'role'\?"):
        MODELS.register("x", rol="enhancer")
    with pytest.raises(GradpromError, match=r"role must be one of enhancer, recognizer \(or both, "
                                            r"comma-separated\), got 'denoiser'"):
        MODELS.register("x", role="denoiser")
    with pytest.raises(GradpromError, match="model 'x': .*role"):
        MODELS.register("x", help="no role")
    assert "x" not in MODELS


# --- behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("srresnet", {"blocks": 2, "channels": 8, "scale": 2}, (2, 1, 16, 16)),
        ("resnet", {"width": 4}, (2, 1, 32, 32)),
        ("unet", {"width": 4, "depth": 2}, (2, 1, 16, 16)),
    ],
)
def test_deterministic_given_seed(name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(name, **kwargs)

    a, b, c = build(0), build(0), build(1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert torch.equal(a(x), b(x))


def test_untrained_srresnet_is_near_identity() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    m = create_model("srresnet")
    dev = (m(x) - x).abs()
    assert dev.max() < 2e-2 and dev.mean() < 5e-3
    # Near, not exactly: the tail is small but not zero, so the body gets gradients from step one.
    assert dev.max() > 0


@pytest.mark.parametrize("scale", [2, 4])
def test_untrained_srresnet_is_near_bicubic(scale: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    m = create_model("srresnet", in_channels=3, blocks=2, channels=16, scale=scale)
    up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert (m(x) - up).abs().max() < 2e-2
    # The model must not simply return the base: a zero residual path would be a bug too.
    assert (m(x) - up).abs().max() > 0


def test_srresnet_is_batch_independent() -> None:
    """No BatchNorm: an image's output must not depend on the other images in the batch."""
    torch.manual_seed(0)
    m = create_model("srresnet", blocks=2, channels=8).train()
    x = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(m(x)[:1], m(x[:1]))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("srresnet", {"blocks": 2, "channels": 8}, (2, 1, 16, 16)),
        ("srresnet", {"blocks": 2, "channels": 8, "scale": 4}, (2, 1, 8, 8)),
        ("resnet", {"width": 4, "depth": 18}, (4, 1, 32, 32)),
        ("unet", {"width": 4, "depth": 3}, (2, 1, 16, 16)),
    ],
)
def test_gradients_reach_every_parameter(name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    m = create_model(name, **kwargs)
    out = m(torch.rand(shape))
    # A target-dependent loss, so no parameter's gradient cancels by symmetry (e.g. a last bias
    # under a mean of logits).
    (out - torch.rand_like(out)).square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_parameter_counts_grow_with_size() -> None:
    def count(name: str, **kw: int) -> int:
        return n_params(create_model(name, **kw))

    assert count("srresnet", blocks=2) < count("srresnet", blocks=4) < count("srresnet", blocks=8)
    assert count("srresnet", channels=8) < count("srresnet", channels=16)
    assert count("srresnet", scale=1) < count("srresnet", scale=2) < count("srresnet", scale=4)
    assert count("resnet", width=8) < count("resnet", width=16)
    assert count("resnet", depth=10) < count("resnet", depth=18) < count("resnet", depth=34)
    assert count("unet", width=8) < count("unet", width=16)
    assert count("unet", depth=2) < count("unet", depth=3) < count("unet", depth=4)


def test_default_models_stay_small() -> None:
    """Defaults must run on a 2-core CPU: guard against a default drifting to a large model."""
    assert n_params(create_model("srresnet")) < 300_000
    assert n_params(create_model("resnet")) < 1_000_000
    assert n_params(create_model("unet")) < 1_000_000
