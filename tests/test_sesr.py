"""sesr (semantic-guided SR enhancer) and the recognizers' `encode`: shapes, the guide's isolation,
PSA and dynamic conv against explicit computations, annealing, training, and guidance use."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprom.errors import GradpromError
from gradprom.models import MODELS, SESR, create_model, model_defaults, model_names
from gradprom.models.sesr import DynamicConv2d, PolarizedSelfAttention

SMALL = {"blocks": 2, "channels": 8, "kernels": 3, "anneal_steps": 10}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These tensors are tiny: one intra-op thread is faster than two, and far faster on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_guide(kind: str | None, in_channels: int = 1, seed: int = 1) -> nn.Module | None:
    """A recognizer as the trial would pass it: built, then frozen in eval mode."""
    if kind is None:
        return None
    torch.manual_seed(seed)
    opts = {"depth": 2} if kind == "unet" else {}
    guide = create_model(kind, in_channels=in_channels, width=4, **opts).eval()
    return guide.requires_grad_(False)


class ZeroGuide(nn.Module):
    """A guide whose features are all zero: sesr with guide=None must behave exactly like this."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encode_channels = channels

    def encode(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.encode_channels, x.shape[2] // 8, x.shape[3] // 8)


def sigmoid(t: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-t))


def softmax(t: Tensor, dim: int) -> Tensor:
    e = torch.exp(t - t.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


# --- registry and options -------------------------------------------------------------------


def test_registered_as_guided_enhancer() -> None:
    assert "sesr" in model_names(role="enhancer")
    meta = MODELS.meta("sesr")
    assert meta.role == "enhancer" and meta.task is None and meta.guided is True and meta.help
    assert model_defaults("sesr") == {"in_channels": 1, "blocks": 4, "channels": 16, "scale": 2, "kernels": 4,
                                      "anneal_steps": 200, "guide": None}
    m = create_model("sesr")
    assert isinstance(m, SESR) and m.guide is None
    assert sum(p.numel() for p in m.parameters()) < 300_000


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"scale": 3}, "scale must be one of 1, 2, 4, got 3"),
        ({"kernels": 0}, "kernels must be an integer >= 1, got 0"),
        ({"anneal_steps": -1}, "anneal_steps must be an integer >= 0, got -1"),
        ({"blocks": 0}, "blocks must be an integer >= 1, got 0"),
        ({"guide": nn.Linear(2, 2)}, "guide must be a recognizer with encode(x)"),
    ],
)
def test_bad_options(kwargs: dict, expected: str) -> None:
    with pytest.raises(GradpromError) as err:
        create_model("sesr", **kwargs)
    assert expected in str(err.value) and str(err.value).startswith("sesr")


def test_guide_in_training_mode_is_refused() -> None:
    guide = make_guide("resnet")
    m = create_model("sesr", guide=guide.train(), **SMALL)
    with pytest.raises(GradpromError, match=r"pass guide\.eval\(\)"):
        m(torch.rand(1, 1, 8, 8))


# --- shapes and the guide's isolation ---------------------------------------------------------


@pytest.mark.parametrize("guide_kind", [None, "resnet", "unet"])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("scale", [1, 2, 4])
def test_shapes(scale: int, in_channels: int, guide_kind: str | None) -> None:
    guide = make_guide(guide_kind, in_channels)
    m = create_model("sesr", in_channels=in_channels, scale=scale, guide=guide, **SMALL)
    out = m(torch.rand(2, in_channels, 8, 12))
    assert out.shape == (2, in_channels, 8 * scale, 12 * scale)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("guide_kind", ["resnet", "unet"])
def test_guide_is_not_part_of_the_enhancer(guide_kind: str) -> None:
    guide = make_guide(guide_kind)
    m = create_model("sesr", guide=guide, **SMALL)
    assert m.guide is guide
    guide_ids = {id(p) for p in guide.parameters()}
    assert not guide_ids & {id(p) for p in m.parameters()}
    assert all(id(t) not in guide_ids for t in m.state_dict(keep_vars=True).values())
    assert not any(k.startswith("_guide") or "stem" in k or "stages" in k for k in m.state_dict())
    assert all(sub is not guide for sub in m.modules())
    # Same parameter names and shapes as the unguided model sized for this guide's features.
    bare = SESR(guide=None, guide_channels=guide.encode_channels, **SMALL)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in bare.state_dict().items()}
    # .to() moves only θ; the guide keeps its own dtype/device.
    m.to(torch.float64)
    assert all(p.dtype == torch.float32 for p in guide.parameters())


@pytest.mark.parametrize("guide_kind", ["resnet", "unet"])
def test_gradients_reach_every_parameter_and_never_the_guide(guide_kind: str) -> None:
    torch.manual_seed(0)
    guide = make_guide(guide_kind).requires_grad_(True)  # even if the caller forgot to freeze it
    m = create_model("sesr", guide=guide, **SMALL)
    out = m(torch.rand(3, 1, 8, 8))
    (out - torch.rand_like(out)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in guide.parameters())


def test_batched_vjp_matches_two_calls() -> None:
    """The strategies may take g_ip and g_vr as one batched VJP: the grouped conv must support it."""
    torch.manual_seed(0)
    m = create_model("sesr", guide=make_guide("resnet"), **SMALL)
    out = m(torch.rand(2, 1, 8, 8))
    params = list(m.parameters())
    v = torch.randn(2, *out.shape)
    batched = torch.autograd.grad(out, params, grad_outputs=v, is_grads_batched=True, retain_graph=True)
    for i in range(2):
        single = torch.autograd.grad(out, params, grad_outputs=v[i], retain_graph=True)
        for b, s in zip(batched, single, strict=True):
            torch.testing.assert_close(b[i], s, rtol=1e-4, atol=1e-6)


def test_gate_parameters_are_the_tail() -> None:
    m = create_model("sesr", **SMALL)
    gate = m.gate_parameters()
    assert [id(p) for p in gate] == [id(m.tail.weight), id(m.tail.bias)]
    assert gate[0].shape[0] == 1  # the last layer: it maps features to the image's channels


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_untrained_is_near_the_fixed_upsampler(scale: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 12, 12)
    m = create_model("sesr", scale=scale, guide=make_guide("resnet"), **SMALL)
    base = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    dev = (m(x) - base).abs()
    assert dev.max() < 2e-2
    assert dev.max() > 0  # a learned residual path exists from step one


def test_batch_independent() -> None:
    """No BatchNorm, per-sample attention and kernels: an image's output ignores the rest of the batch."""
    torch.manual_seed(0)
    m = create_model("sesr", guide=make_guide("resnet"), **SMALL)
    x = torch.rand(4, 1, 8, 8)
    twin = copy.deepcopy(m)  # train mode advances the anneal step, so compare at the same step
    torch.testing.assert_close(m.train()(x)[1:2], twin.train()(x[1:2]))
    torch.testing.assert_close(m.eval()(x)[2:3], m(x[2:3]))


# --- polarized self-attention ---------------------------------------------------------------


def psa_weights(psa: PolarizedSelfAttention) -> dict[str, Tensor]:
    return {name: p.detach().double().flatten(1) if p.dim() == 4 else p.detach().double()
            for name, p in psa.named_parameters()}


def test_psa_channel_branch_matches_explicit_computation() -> None:
    torch.manual_seed(0)
    psa = PolarizedSelfAttention(6).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    w = psa_weights(psa)
    xf = x.flatten(2)  # [B, C, P]
    v = torch.einsum("jc,bcp->bjp", w["ch_value.weight"], xf) + w["ch_value.bias"][None, :, None]
    q = torch.einsum("oc,bcp->bop", w["ch_query.weight"], xf)[:, 0] + w["ch_query.bias"]
    s = softmax(q, dim=1)  # over H·W
    z = torch.einsum("bjp,bp->bj", v, s)  # C/2 × 1
    a = sigmoid(torch.einsum("cj,bj->bc", w["ch_up.weight"], z) + w["ch_up.bias"])
    expected = x * a[:, :, None, None]
    torch.testing.assert_close(x * psa.channel_attention(x), expected)
    assert psa.channel_attention(x).shape == (2, 6, 1, 1)


def test_psa_spatial_branch_matches_explicit_computation() -> None:
    torch.manual_seed(1)
    psa = PolarizedSelfAttention(6).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    w = psa_weights(psa)
    b, _, h, wd = x.shape
    expected = torch.empty_like(x)
    # Per sample: pooled query (softmax over the C/2 channels), value at every pixel, dot product.
    for i in range(b):
        q_map = torch.einsum("jc,chw->jhw", w["sp_query.weight"], x[i]) + w["sp_query.bias"][:, None, None]
        q = softmax(q_map.mean(dim=(1, 2)), dim=0)
        for r in range(h):
            for c in range(wd):
                v = w["sp_value.weight"] @ x[i, :, r, c] + w["sp_value.bias"]
                expected[i, :, r, c] = x[i, :, r, c] * sigmoid((q * v).sum())
    torch.testing.assert_close(x * psa.spatial_attention(x), expected)
    assert psa.spatial_attention(x).shape == (2, 1, 5, 7)
    # Parallel form: the block is the sum of both branches.
    torch.testing.assert_close(psa(x), x * psa.channel_attention(x) + expected)


# --- dynamic convolution --------------------------------------------------------------------


def test_dynamic_conv_is_attention_weighted_sum_of_k_convs() -> None:
    torch.manual_seed(0)
    dc = DynamicConv2d(3, 5, kernels=4, anneal_steps=100).double()
    with torch.no_grad():  # sharpen the attention so a wrong mixing would show
        dc.attention[2].weight.mul_(50)
        dc.step.fill_(50)
    x = torch.randn(3, 3, 6, 7, dtype=torch.float64)
    temperature = 30 - 29 * 0.5
    lin1, lin2 = dc.attention[0], dc.attention[2]
    z = lin2(torch.relu(lin1(x.mean(dim=(2, 3)))))
    pi = softmax(z / temperature, dim=1)
    assert (pi.amax(dim=1) - pi.amin(dim=1)).min() > 0.05  # not uniform: the test can tell kernels apart
    torch.testing.assert_close(dc.attention_weights(x), pi)
    expected = torch.stack([
        sum(pi[b, k] * F.conv2d(x[b : b + 1], dc.weight[k], dc.bias[k], padding=1) for k in range(4))[0]
        for b in range(3)
    ])
    torch.testing.assert_close(dc.eval()(x), expected)
    # Train mode uses the same step's temperature, then advances it.
    torch.testing.assert_close(dc.train()(x), expected)
    assert int(dc.step) == 51


def test_temperature_anneals_linearly_from_30_to_1() -> None:
    dc = DynamicConv2d(2, 2, kernels=2, anneal_steps=8)
    x = torch.rand(1, 2, 4, 4)
    seen = []
    for _ in range(11):
        seen.append(float(dc.temperature()))
        dc.train()(x)
    assert seen[0] == 30.0
    assert seen == pytest.approx([30 - 29 * min(s, 8) / 8 for s in range(11)])
    assert seen[8] == seen[10] == 1.0
    assert DynamicConv2d(2, 2, kernels=2, anneal_steps=0).temperature() == 1.0


def test_step_advances_only_in_train_mode_and_survives_state_dict() -> None:
    torch.manual_seed(0)
    m = create_model("sesr", guide=make_guide("resnet"), **SMALL)
    steps = [mod.step for mod in m.modules() if isinstance(mod, DynamicConv2d)]
    assert len(steps) == SMALL["blocks"]
    x = torch.rand(2, 1, 8, 8)
    m.eval()
    for _ in range(3):
        m(x)
    assert all(int(s) == 0 for s in steps)
    m.train()
    for _ in range(4):
        m(x)
    assert all(int(s) == 4 for s in steps)
    state = m.state_dict()
    assert all(int(state[f"body.{i}.conv1.step"]) == 4 for i in range(SMALL["blocks"]))
    # A resumed model continues the schedule exactly: same next training-mode output.
    torch.manual_seed(5)
    resumed = create_model("sesr", guide=m.guide, **SMALL)
    resumed.load_state_dict(state)
    assert [float(mod.temperature()) for mod in resumed.modules() if isinstance(mod, DynamicConv2d)] == \
        pytest.approx([30 - 29 * 4 / 10] * SMALL["blocks"])
    assert torch.equal(resumed.train()(x), m(x))


# --- training and guidance ------------------------------------------------------------------


def smooth_pairs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random smooth 32 px images (bicubic-enlarged 4×4 noise) and their 16 px area-downsampled inputs."""
    g = torch.Generator().manual_seed(seed)
    hr = F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=32, mode="bicubic", align_corners=False)
    hr = hr.clamp(0, 1)
    return F.avg_pool2d(hr, 2), hr


def test_adam_steps_lower_the_l1_loss() -> None:
    torch.manual_seed(0)
    lr_img, hr_img = smooth_pairs(8, seed=0)
    m = create_model("sesr", guide=make_guide("resnet"), **SMALL).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = (m(lr_img) - hr_img).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = (m(lr_img) - hr_img).abs().mean().item()
    assert final < 0.8 * losses[0], (losses[0], final)


def test_output_depends_on_the_guide() -> None:
    torch.manual_seed(0)
    guide = make_guide("resnet")
    m = create_model("sesr", guide=guide, **SMALL).eval()
    x = torch.rand(2, 1, 8, 8)
    before = m(x)
    with torch.no_grad():
        for p in guide.stages[-1].parameters():
            p.add_(torch.randn_like(p))
    after = m(x)
    assert (after - before).abs().max() > 1e-5


def test_no_guide_is_the_same_as_zero_guide_features() -> None:
    torch.manual_seed(0)
    guided = SESR(guide=ZeroGuide(12).eval(), **SMALL).eval()
    bare = SESR(guide=None, guide_channels=12, **SMALL).eval()
    bare.load_state_dict(guided.state_dict())
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(bare(x), guided(x), rtol=0, atol=1e-6)


# --- recognizers' encode --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "opts", "down"), [
    ("resnet", {"depth": 10}, 8), ("resnet", {"depth": 18}, 8), ("unet", {"depth": 2}, 4), ("unet", {"depth": 3}, 8),
])
def test_encode_is_the_deepest_encoder_map_and_forward_is_unchanged(kind: str, opts: dict, down: int) -> None:
    torch.manual_seed(0)
    m = create_model(kind, in_channels=2, width=4, **opts).eval()
    width_mult = 8 if kind == "resnet" else 2 ** opts["depth"]
    assert m.encode_channels == 4 * width_mult
    x = torch.rand(3, 2, 32, 48)
    before = m(x).clone()
    # Capture what forward itself computes at the end of the encoder, via a hook.
    where = m.stages if kind == "resnet" else m.down[-1]
    captured: list[Tensor] = []
    handle = where.register_forward_hook(lambda _mod, _inp, out: captured.append(out.detach().clone()))
    m(x)
    handle.remove()
    feat = m.encode(x)
    assert feat.shape == (3, m.encode_channels, 32 // down, 48 // down)
    assert torch.equal(feat, captured[0])
    after = m(x)
    assert torch.equal(before, after)
    torch.manual_seed(0)
    twin = create_model(kind, in_channels=2, width=4, **opts).eval()
    assert torch.equal(twin(x), before)
    if kind == "resnet":
        assert torch.equal(m.fc(m.pool(feat).flatten(1)), before)


def test_unet_encode_checks_the_size() -> None:
    m = create_model("unet", depth=3, width=4).eval()
    with pytest.raises(GradpromError, match="divisible by 8"):
        m.encode(torch.rand(1, 1, 30, 32))
