"""The batched augmentation against torchvision: parameter statistics, each op, the whole pipeline."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision import transforms as T

from engine.simclr.augment import (
    FLIP_P,
    GRAYSCALE_P,
    JITTER_P,
    RATIO,
    SCALE,
    AugmentParams,
    BatchedAugment,
    ReferenceTwoViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    reference_transform,
    rgb_to_grayscale,
    sample_crop_boxes,
)

OPS = {
    "brightness": (adjust_brightness, TF.adjust_brightness),
    "contrast": (adjust_contrast, TF.adjust_contrast),
    "saturation": (adjust_saturation, TF.adjust_saturation),
    "hue": (adjust_hue, TF.adjust_hue),
}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = a.double().sort().values, b.double().sort().values
    at = torch.cat([a, b])  # the CDFs only jump at sample points (ties handled by right=True)
    cdf_a = torch.searchsorted(a, at, right=True) / len(a)
    cdf_b = torch.searchsorted(b, at, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def ks_bound(n: int, m: int) -> float:
    """KS critical value at alpha = 0.001 (c = 1.95): a false failure is 1 in 1000 seeds."""
    return 1.95 * math.sqrt((n + m) / (n * m))


def colorful_images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 3, h, w] smooth random colour fields: like photos, different crops look different."""
    coarse = torch.rand(n, 3, 4, 4, generator=generator(seed))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    return (smooth * 255).round().to(torch.uint8)


def fixed_params(boxes: list[tuple[int, int, int, int]], flip: list[bool]) -> AugmentParams:
    """Hand-made parameters: the given boxes and flips, no jitter, no grayscale."""
    n = len(boxes)
    top, left, height, width = (torch.tensor(c) for c in zip(*boxes))
    return AugmentParams(
        top=top, left=left, height=height, width=width, flip=torch.tensor(flip),
        jitter=torch.zeros(n, dtype=torch.bool), brightness=torch.ones(n), contrast=torch.ones(n),
        saturation=torch.ones(n), hue=torch.zeros(n), order=torch.arange(4).repeat(n, 1),
        grayscale=torch.zeros(n, dtype=torch.bool),
    )  # fmt: skip


# --- parameter statistics against the reference ------------------------------------------------


@pytest.mark.parametrize("height, width", [(32, 48), (8, 64)])  # 8x64: ~half the draws fall back
def test_crop_distribution_matches_torchvision(height: int, width: int) -> None:
    torch.manual_seed(0)
    img = torch.empty(3, height, width)
    ref = torch.tensor([T.RandomResizedCrop.get_params(img, list(SCALE), list(RATIO)) for _ in range(3000)])
    ours = torch.stack(sample_crop_boxes(20000, height, width, generator=generator()), dim=1)

    def stats(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        top, left, h, w = boxes.double().unbind(1)
        return {
            "area": h * w / (height * width),
            "log_ratio": torch.log(w / h),
            "center_x": (left + w / 2) / width,
            "center_y": (top + h / 2) / height,
        }

    bound = ks_bound(len(ref), len(ours))
    for name, (a, b) in {k: (v, stats(ours)[k]) for k, v in stats(ref).items()}.items():
        assert ks_statistic(a, b) < bound, name
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    assert (ours >= 0).all() and (ours[:, 2:] > 0).all()


def test_crop_fallback_equals_torchvision() -> None:
    # scale (1, 1) on 32x48 never fits the ratio range: every draw takes the center-crop fallback
    tv = T.RandomResizedCrop.get_params(torch.empty(3, 32, 48), [1.0, 1.0], list(RATIO))
    ours = torch.stack(sample_crop_boxes(100, 32, 48, scale=(1.0, 1.0), generator=generator()), dim=1)
    assert tv == (0, 2, 32, 43)
    assert (ours == torch.tensor(tv)).all()


@pytest.mark.parametrize("strength", [1.0, 0.5, 2.0])
def test_rates_and_factor_ranges_match_reference(strength: float) -> None:
    n = 20000
    p = BatchedAugment(32, strength).sample_params(n, 32, 32, generator())
    for mask, rate in ((p.flip, FLIP_P), (p.jitter, JITTER_P), (p.grayscale, GRAYSCALE_P)):
        assert abs(mask.float().mean().item() - rate) < 4.5 * math.sqrt(rate * (1 - rate) / n)
    # the reference pipeline's own ColorJitter ranges (it clips brightness etc. at 0 itself)
    jitter = next(t for t in reference_transform(32, strength).transforms if isinstance(t, T.RandomApply))
    cj = jitter.transforms[0]
    expected = (max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength)
    assert jitter.p == JITTER_P and cj.brightness == cj.contrast == cj.saturation == pytest.approx(expected)
    assert cj.hue == pytest.approx((-0.2 * strength, 0.2 * strength))
    ranges = (cj.brightness, cj.contrast, cj.saturation, cj.hue)
    for factor, (lo, hi) in zip((p.brightness, p.contrast, p.saturation, p.hue), ranges):
        assert lo <= factor.min().item() < lo + 0.01 * (hi - lo)
        assert hi - 0.01 * (hi - lo) < factor.max().item() <= hi
        assert abs(factor.mean().item() - (lo + hi) / 2) < 0.02 * (hi - lo)
    # each image's op order is a permutation, and every op is equally likely at every step
    assert (p.order.sort(dim=1).values == torch.arange(4)).all()
    share = torch.nn.functional.one_hot(p.order, 4).float().mean(0)  # [step, op]
    assert (share - 0.25).abs().max() < 4.5 * math.sqrt(0.25 * 0.75 / n)


def test_reference_transform_is_the_seeds_pipeline() -> None:
    crop, flip, jitter, gray, to_tensor = reference_transform(24, 1.0).transforms
    assert isinstance(crop, T.RandomResizedCrop) and crop.size == (24, 24)
    assert (tuple(crop.scale), tuple(crop.ratio)) == (SCALE, RATIO)
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == FLIP_P
    assert isinstance(jitter.transforms[0], T.ColorJitter) and jitter.transforms[0].hue == (-0.2, 0.2)
    assert isinstance(gray, T.RandomGrayscale) and gray.p == GRAYSCALE_P
    assert isinstance(to_tensor, T.ToTensor)


def test_grayscale_rate_of_outputs_matches_reference() -> None:
    # measured on the images both backends produce, not on parameters: a view is gray iff R == G == B
    images = colorful_images(300)
    torch.manual_seed(0)  # the reference draws from the global RNG
    reference = ReferenceTwoViews(images, 32)
    ref_views = torch.stack([view for i in range(len(reference)) for view in reference[i]])
    aug = BatchedAugment(32)
    ours = torch.cat([aug(images, generator(1)), aug(images, generator(2))])
    tolerance = 4.5 * math.sqrt(GRAYSCALE_P * (1 - GRAYSCALE_P) / len(ours))
    for views in (ref_views, ours):
        gray = ((views[:, 0] == views[:, 1]) & (views[:, 1] == views[:, 2])).flatten(1).all(1)
        assert abs(gray.float().mean().item() - GRAYSCALE_P) < tolerance


# --- each op against torchvision.transforms.functional ------------------------------------------


def test_ops_equal_torchvision_on_single_images() -> None:
    img = torch.rand(3, 20, 28, generator=generator())
    img[:, :2] = img[0, :2]  # gray pixels (hue undefined)
    img[1, 2:4] = img[0, 2:4]  # ties between the max channels
    img[:, 4:6, :4] = torch.tensor([0.0, 1.0])[torch.randint(2, (3, 2, 4), generator=generator())]  # extremes
    cases = {name: [0.0, 0.2, 0.7, 1.0, 1.3, 1.8] for name in ("brightness", "contrast", "saturation")}
    cases["hue"] = [-0.5, -0.2, -0.05, 0.0, 0.1, 0.2, 0.5]
    for name, factors in cases.items():
        ours_fn, tv_fn = OPS[name]
        for f in factors:
            ours = ours_fn(img[None], torch.tensor([f]))[0]
            # hue: a closed-form hsv2rgb instead of torchvision's six-way select, equal to float rounding
            assert torch.allclose(ours, tv_fn(img, f), atol=1e-5 if name == "hue" else 1e-6), (name, f)
    assert torch.allclose(rgb_to_grayscale(img[None])[0], TF.rgb_to_grayscale(img), atol=1e-6)


def test_ops_use_each_images_own_factor() -> None:
    imgs = torch.rand(4, 3, 8, 8, generator=generator())
    factors = {"brightness": [0.3, 1.0, 1.5, 1.8], "contrast": [0.2, 0.9, 1.4, 1.8],
               "saturation": [0.0, 0.5, 1.2, 1.8], "hue": [-0.2, -0.1, 0.05, 0.2]}  # fmt: skip
    for name, fs in factors.items():
        ours_fn, tv_fn = OPS[name]
        ours = ours_fn(imgs, torch.tensor(fs))
        for i, f in enumerate(fs):
            assert torch.allclose(ours[i], tv_fn(imgs[i], f), atol=1e-5), (name, i)


@pytest.mark.parametrize("size", [16, 32])
def test_crop_equals_torchvision_resized_crop(size: int) -> None:
    img = torch.rand(1, 3, 24, 40, generator=generator())
    # upsampled small boxes, boxes on every edge, the whole image, a downsampled wide box
    boxes = [(3, 5, 7, 9), (0, 0, 24, 40), (17, 31, 7, 9), (0, 20, 12, 20), (10, 0, 14, 6), (2, 1, 20, 38)]
    flips = [False, True, True, False, True, False]
    out = BatchedAugment(size).apply(img.expand(len(boxes), -1, -1, -1), fixed_params(boxes, flips))
    for i, ((t, l, h, w), flip) in enumerate(zip(boxes, flips)):
        ref = TF.resized_crop(img[0], t, l, h, w, [size, size], antialias=False)
        assert torch.allclose(out[i], TF.hflip(ref) if flip else ref, atol=1e-5), i


def test_whole_pipeline_equals_torchvision_per_image() -> None:
    """Every parameter honoured: the batched result equals torchvision's functional ops, image by image,
    with the same parameters (including each image's jitter order)."""
    images = colorful_images(48, 24, 40)
    aug = BatchedAugment(16)
    p = aug.sample_params(len(images), 24, 40, generator(3))
    out = aug.apply(images, p)
    assert p.jitter.any() and (~p.jitter).any() and p.grayscale.any() and p.flip.any()
    for i in range(len(images)):
        box = [int(v[i]) for v in (p.top, p.left, p.height, p.width)]
        x = TF.resized_crop(images[i].float() / 255, *box, [16, 16], antialias=False)
        if p.flip[i]:
            x = TF.hflip(x)
        if p.jitter[i]:
            factors = (p.brightness, p.contrast, p.saturation, p.hue)
            for op in p.order[i].tolist():
                x = list(OPS.values())[op][1](x, factors[op][i].item())
        if p.grayscale[i]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        assert torch.allclose(out[i], x, atol=1e-4), i


# --- output contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_size, out_size", [(32, 32), (32, 24), (96, 64), (20, 32)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_shape_dtype_range(in_size: int, out_size: int, dtype: torch.dtype) -> None:
    images = colorful_images(6, in_size, in_size)
    if dtype == torch.float32:
        images = images.float() / 255
    out = BatchedAugment(out_size)(images, generator())
    assert out.shape == (6, 3, out_size, out_size) and out.dtype == torch.float32
    assert out.device == images.device and out.min() >= 0 and out.max() <= 1


def test_each_image_gets_its_own_parameters() -> None:
    images = colorful_images(1).expand(64, -1, -1, -1)  # 64 copies of one image
    aug = BatchedAugment(32)
    p = aug.sample_params(64, 32, 32, generator())
    assert len(torch.stack((p.top, p.left, p.height, p.width), 1).unique(dim=0)) > 60
    assert len(p.brightness.unique()) == 64 and len(p.order.unique(dim=0)) > 12
    out = aug.apply(images, p)
    assert len(out.flatten(1).unique(dim=0)) == 64


def test_two_views_of_an_image_differ() -> None:
    images = colorful_images(32)
    aug = BatchedAugment(32)
    g = generator()
    view1, view2 = aug(images, g), aug(images, g)
    assert ((view1 - view2).flatten(1).abs().amax(1) > 0.01).all()


def test_seeded_generator_is_deterministic() -> None:
    images = colorful_images(8)
    aug = BatchedAugment(24)
    assert torch.equal(aug(images, generator(7)), aug(images, generator(7)))
    assert not torch.equal(aug(images, generator(7)), aug(images, generator(8)))
    torch.manual_seed(5)  # no generator: the global RNG
    a = aug(images)
    torch.manual_seed(5)
    assert torch.equal(a, aug(images))


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="jitter_strength"):
        BatchedAugment(32, jitter_strength=3.0)
    # The config's largest value is accepted: RunConfig and the augmentation share one limit.
    from db.config import JITTER_STRENGTH_MAX, RunConfig

    top = RunConfig(jitter_strength=JITTER_STRENGTH_MAX).jitter_strength
    assert BatchedAugment(32, jitter_strength=top).jitter_strength == top
    with pytest.raises(ValueError, match="image_size"):
        BatchedAugment(0)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        BatchedAugment(32)(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ReferenceTwoViews(torch.zeros(2, 3, 32, 32), 32)


def test_masked_jitter_equals_grouped_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's sync-free ColorJitter (every op on every image, masked) gives the CPU's numbers."""
    import engine.simclr.augment as augment

    images = colorful_images(64)
    aug = BatchedAugment(24)
    p = aug.sample_params(64, 32, 32, generator())
    grouped = aug.apply(images, p)
    monkeypatch.setattr(augment, "group_on_host", lambda device: False)
    masked = aug.apply(images, p)
    assert torch.allclose(masked, grouped, atol=1e-6)
    assert not torch.equal(masked, aug.apply(images, aug.sample_params(64, 32, 32, generator(1))))


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    images = colorful_images(16)
    aug = BatchedAugment(24)
    p = aug.sample_params(16, 32, 32, generator())
    out = aug.apply(images.cuda(), p.to("cuda"))
    assert out.is_cuda and torch.allclose(out.cpu(), aug.apply(images, p), atol=1e-4)
    assert aug(images.cuda(), torch.Generator("cuda").manual_seed(0)).is_cuda
    assert aug(images.cuda(), generator()).is_cuda  # a CPU generator with CUDA images


# --- the reference backend ----------------------------------------------------------------------


def test_reference_two_views() -> None:
    torch.manual_seed(0)
    ds = ReferenceTwoViews(colorful_images(4), image_size=24)
    assert len(ds) == 4
    view1, view2 = ds[1]
    assert view1.shape == view2.shape == (3, 24, 24) and view1.dtype == torch.float32
    assert 0 <= view1.min() and view1.max() <= 1 and not torch.equal(view1, view2)
    batch1, batch2 = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch1.shape == batch2.shape == (4, 3, 24, 24)
