"""Dataset registry and the built-in `synthetic` dataset: determinism, shapes, labels and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from gradprom.datasets import (
    DATASETS,
    TASKS,
    Split,
    TaskData,
    dataset_info,
    dataset_names,
    get_dataset,
    orientation_free,
    register_dataset,
)
from gradprom.errors import GradpromError

SMALL = {"image_size": 32, "n_train": 60, "n_val": 30, "n_test": 30}


def small(task: str = "classification", seed: int = 0, **overrides: object) -> TaskData:
    return get_dataset("synthetic", task=task, seed=seed, **{**SMALL, **overrides})


@pytest.mark.parametrize("task", TASKS)
def test_shapes_dtypes_ranges(task: str) -> None:
    data = small(task)
    assert (data.name, data.task, data.num_classes, data.channels, data.image_size) == (
        "synthetic",
        task,
        3,
        1,
        32,
    )
    assert len(data.class_names) == 3
    for split, n in ((data.train, 60), (data.val, 30), (data.test, 30)):
        assert len(split) == n
        assert split.images.shape == (n, 1, 32, 32)
        assert split.images.dtype == torch.float32
        assert split.targets.dtype == torch.int64
        assert split.targets.shape == ((n,) if task == "classification" else (n, 32, 32))
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
        assert set(split.targets.unique().tolist()) == {0, 1, 2}


def test_intensities_mostly_in_medical_range() -> None:
    images = small().train.images
    lo, hi = torch.quantile(images.flatten(), torch.tensor([0.02, 0.995])).tolist()
    assert 0.05 < lo < 0.3 and 0.5 < hi < 0.95
    assert ((images <= 0) | (images >= 1)).float().mean() < 0.02  # the darkest structures clip, rarely
    assert images.std() > 0.05  # not a flat image


def test_same_seed_same_tensors_different_seed_differs() -> None:
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).targets, getattr(b, name).targets)
        assert not torch.equal(getattr(a, name).images, getattr(c, name).images)


def test_splits_differ_and_are_independent_of_other_counts() -> None:
    data = small(n_val=60, n_test=60)
    assert not torch.equal(data.train.images, data.val.images)
    assert not torch.equal(data.val.images, data.test.images)
    # Each split has its own stream: changing n_train leaves val and test untouched.
    other = small(n_train=17, n_val=60, n_test=60)
    assert torch.equal(data.val.images, other.val.images)
    assert torch.equal(data.test.targets, other.test.targets)


def test_classes_balanced() -> None:
    targets = get_dataset("synthetic", image_size=16, n_train=301, n_val=1, n_test=1).train.targets
    counts = torch.bincount(targets, minlength=3)
    assert counts.max() - counts.min() <= 1


def test_segmentation_shares_images_and_masks_match_labels() -> None:
    cls, seg = small("classification", seed=1), small("segmentation", seed=1)
    assert torch.equal(cls.train.images, seg.train.images)
    labels, masks = cls.train.targets, seg.train.targets
    finding = (masks == 2).flatten(1).sum(1)
    organ = (masks >= 1).flatten(1).float().mean(1)
    assert (finding > 0).all()  # every image holds spots and curves, whatever its class
    assert (finding < 0.15 * 32 * 32).all()  # and they are fine: a small share of the image
    shares = [finding[labels == k].float().mean() for k in range(3)]  # the mask's size does not tell the class
    assert max(shares) / min(shares) < 1.25, shares
    assert (organ > 0.1).all() and (organ < 0.6).all()
    assert seg.class_names == ["background", "organ", "finding"]
    assert cls.class_names == ["normal", "cluster", "branching"]


def test_the_finding_mask_marks_the_fine_structures_in_the_image() -> None:
    """Finding pixels are where the image departs from its smooth surroundings (the spots and curves), not a
    drawing of their own: the mean |image − local median| is several times larger there than on the organ."""
    seg = small("segmentation", seed=5, n_train=90, image_size=48)
    x, masks = seg.train.images[:, 0].numpy(), seg.train.targets.numpy()
    detail = np.abs(x - ndimage.median_filter(x, size=(1, 7, 7)))
    on, organ = detail[masks == 2].mean(), detail[masks == 1].mean()
    assert on > 4 * organ, (on, organ)


def _coarse_features(x: torch.Tensor) -> torch.Tensor:
    """What a model could use if the label leaked into coarse content: 4x4 means, global mean/std."""
    pooled = F.adaptive_avg_pool2d(x, 4).flatten(1)
    flat = x.flatten(1)
    return torch.cat(
        [pooled, flat.mean(1, keepdim=True), flat.std(1, keepdim=True), torch.ones(len(x), 1)], 1
    )


def test_not_solvable_from_coarse_features() -> None:
    """Coarse content (organ, shading, background) is uninformative; the fine-detail probes are in test_synthetic."""
    data = get_dataset("synthetic", image_size=32, seed=0, n_train=600, n_val=1, n_test=300)
    train, test = data.train, data.test
    weights = torch.zeros(19, 3, requires_grad=True)  # 16 pooled means, mean, std, bias
    opt = torch.optim.LBFGS([weights], max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(_coarse_features(train.images) @ weights, train.targets) + 1e-3 * (weights**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    acc = ((_coarse_features(test.images) @ weights.detach()).argmax(1) == test.targets).float().mean().item()
    assert acc < 0.45  # chance is 1/3


def test_to_device_keeps_everything() -> None:
    data = small()
    moved = data.to("cpu")
    assert moved is not data and moved.class_names == data.class_names
    assert torch.equal(moved.test.images, data.test.images)
    assert moved.train.to(torch.device("cpu")).targets.device.type == "cpu"


def test_split_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 images but 2 targets"):
        Split(torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        Split(torch.zeros(3, 4, 4), torch.zeros(3, dtype=torch.int64))


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(GradpromError, match="unknown dataset 'synthetc'.*Did you mean 'synthetic'"):
        get_dataset("synthetc")


def test_unsupported_task_lists_the_supported_ones() -> None:
    with pytest.raises(
        GradpromError, match="does not support task 'detection'.*classification, segmentation"
    ):
        get_dataset("synthetic", task="detection")


@pytest.mark.parametrize("size", [0, 12, 30, 66.0, True, "64"])
def test_bad_image_size(size: object) -> None:
    with pytest.raises(GradpromError, match="image_size must be an integer >= 16 and a multiple of 4"):
        get_dataset("synthetic", image_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "value"), [("n_train", 0), ("n_val", -1), ("n_test", 2.5)])
def test_bad_counts(option: str, value: object) -> None:
    with pytest.raises(GradpromError, match=f"{option} must be an integer >= 1") as info:
        get_dataset("synthetic", image_size=16, **{option: value})
    assert "\n" not in str(info.value)


def test_bad_seed() -> None:
    with pytest.raises(GradpromError, match="seed must be an integer >= 0"):
        get_dataset("synthetic", seed=-1)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(GradpromError, match=r"dataset 'synthetic' has no option 'n_trian'. Did you mean "
                                            r"'n_train'\? Its options: n_train \(default 512\)"):
        get_dataset("synthetic", n_trian=10)


def test_names_info_and_registering_a_dataset() -> None:
    assert "synthetic" in dataset_names()
    info = dataset_info("synthetic")
    assert info["tasks"] == ("classification", "segmentation")
    assert info["options"] == {"n_train": 512, "n_val": 256, "n_test": 1024}
    assert "spots and curves" in info["help"]

    @register_dataset("_test_tiny", tasks=("classification",), help="tiny")
    def tiny(task: str, image_size: int, seed: int, n: int = 2) -> TaskData:
        split = Split(torch.zeros(n, 1, image_size, image_size), torch.zeros(n, dtype=torch.int64))
        return TaskData("_test_tiny", task, 2, 1, image_size, ["a", "b"], split, split, split)

    register_dataset("_test_turnable", tasks=("classification",), dihedral_invariant=True, help="turnable")(tiny)
    try:
        # orientation matters unless a dataset says otherwise; synthetic's findings are arrangements of spots
        assert orientation_free("synthetic") and orientation_free("_test_turnable")
        assert not orientation_free("_test_tiny") and not orientation_free("camus")
        assert not orientation_free("no_such_dataset")
        assert len(get_dataset("_test_tiny", image_size=16, n=3).train) == 3
        with pytest.raises(GradpromError, match="supported tasks: classification$"):
            get_dataset("_test_tiny", task="segmentation")
        with pytest.raises(GradpromError, match="already registered"):
            register_dataset("_test_tiny")(tiny)
        with pytest.raises(GradpromError, match=r"unknown metadata key of dataset '_test_x' 'unpaird'. Did you mean "
                                                r"'unpaired'\?"):
            register_dataset("_test_x", unpaird=True)
    finally:  # keep the global registry as other tests expect it
        for name in ("_test_tiny", "_test_turnable"):
            DATASETS._entries.pop(name, None)
            DATASETS._meta.pop(name, None)
