"""SimCLR's two-view augmentation, vectorized over a batch with each image's own random parameters.

Why our own code: torchvision.transforms.v2 applied to a batch draws ONE parameter set for the
whole batch, and per-image PIL transforms in loader workers are what leave the model idle at
32x32. So parameters are drawn for all N images at once (`sample_params`) and applied with a
handful of whole-batch tensor ops (`apply`) on whatever device the images live on.

The recipe (docs/design.md, as Spijkervet/SimCLR's TransformsSimCLR wrote it): RandomResizedCrop(size,
scale 0.08-1, ratio 3/4-4/3), horizontal flip p=0.5, ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with
p=0.8 (its four ops in a random order per image), RandomGrayscale p=0.2. Each op follows
torchvision's tensor implementation (`torchvision.transforms.functional`), which the tests check
image by image; `reference_transform` / `ReferenceTwoViews` are the per-image torchvision
pipeline itself, kept for parity checks and the throughput benchmark.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T

from db.config import JITTER_STRENGTH_MAX

SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults, which the seed used
RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10  # torchvision tries 10 (area, ratio) draws before its center-crop fallback
FLIP_P, JITTER_P, GRAYSCALE_P = 0.5, 0.8, 0.2
# torchvision's tensor rgb_to_grayscale uses 0.2989 (not ITU-R 601's 0.299); we take its number so
# every op matches torchvision.transforms.functional to float precision.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
# ColorJitter op ids, in the order torchvision numbers them for its random permutation
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@dataclass(frozen=True)
class AugmentParams:
    """Per-image random parameters for a batch of N images (every field has N rows).

    Crop boxes are in input pixels as RandomResizedCrop.get_params returns them; `order[i]` is the
    permutation of (brightness, contrast, saturation, hue) = (0, 1, 2, 3) image i's jitter runs in.
    """

    top: Tensor  # int64 [N]
    left: Tensor  # int64 [N]
    height: Tensor  # int64 [N]
    width: Tensor  # int64 [N]
    flip: Tensor  # bool [N]
    jitter: Tensor  # bool [N]: ColorJitter applied at all (p=0.8)
    brightness: Tensor  # float32 [N]
    contrast: Tensor  # float32 [N]
    saturation: Tensor  # float32 [N]
    hue: Tensor  # float32 [N], in turns: [-0.2s, 0.2s]
    order: Tensor  # int64 [N, 4]
    grayscale: Tensor  # bool [N]

    def __len__(self) -> int:
        return self.top.shape[0]

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@functools.lru_cache(maxsize=None)
def _const(values: tuple, device: torch.device) -> Tensor:
    """A small constant tensor, made once per device: torch.tensor(..., device="cuda") on every
    call would be a blocking host-to-device copy each batch."""
    return torch.tensor(values, dtype=torch.float32, device=device)


# --- parameter sampling ----------------------------------------------------------------------


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = SCALE,
    ratio: tuple[float, float] = RATIO,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RandomResizedCrop.get_params for n images at once: (top, left, height, width), int64 [n].

    Same algorithm: up to 10 attempts of (area ~ U(scale) * H*W, log ratio ~ U(log ratio)), the
    first attempt whose rounded box fits wins; if none does, torchvision's center-crop fallback.
    All 10 attempts are drawn for every image and the first fitting one picked, which is the same
    distribution as drawing them one at a time.
    """
    # float64 because torchvision does this arithmetic in Python floats; `round` and torch.round
    # both round half to even, so boxes agree to the pixel for the same draws.
    u = torch.rand(n, 2 * CROP_ATTEMPTS + 2, generator=generator, device=device, dtype=torch.float64)
    u_area, u_ratio, u_top, u_left = u[:, :CROP_ATTEMPTS], u[:, CROP_ATTEMPTS:-2], u[:, -2], u[:, -1]
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    found = fits.any(dim=1)

    # Fallback, as torchvision: the whole image, or its center cropped to the nearest allowed ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), fw)
    h = torch.where(found, h.gather(1, first).squeeze(1), fh)
    # randint(0, H - h + 1) per image: floor of a uniform draw scaled to that image's range
    top = torch.where(found, (u_top * (height - h + 1)).long(), (height - fh) // 2)
    left = torch.where(found, (u_left * (width - w + 1)).long(), (width - fw) // 2)
    return top, left, h, w


# --- the colour ops, per-image factors (torchvision.transforms.functional's tensor versions) ------


def _per_image(factor: Tensor) -> Tensor:
    return factor.to(torch.float32).view(-1, 1, 1, 1)


def _blend(img: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """torchvision's _blend for float images: factor * img + (1 - factor) * other, clamped."""
    f = _per_image(factor)
    # one new tensor, then in place: these ops are memory-bound, so passes over memory are the cost
    return (img * f).add_(other * (1.0 - f)).clamp_(0.0, 1.0)


def rgb_to_grayscale(img: Tensor) -> Tensor:
    """[N, 3, H, W] float -> luma [N, 1, H, W] with torchvision's weights."""
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    return (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])


def adjust_brightness(img: Tensor, factor: Tensor) -> Tensor:
    return (img * _per_image(factor)).clamp_(0.0, 1.0)


def adjust_contrast(img: Tensor, factor: Tensor) -> Tensor:
    return _blend(img, rgb_to_grayscale(img).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(img: Tensor, factor: Tensor) -> Tensor:
    return _blend(img, rgb_to_grayscale(img), factor)


def _is_max(channel: Tensor, maxc: Tensor) -> Tensor:
    """1.0 where channel == maxc else 0.0, as a float (maxc - channel >= 0, so its sign is 0 or 1).

    Float masks with lerp as the select: on the CPU, torch.where and bool-mask arithmetic run an
    order of magnitude slower than plain float ops of the same size.
    """
    return (maxc - channel).sign_().neg_().add_(1.0)


# hsv2rgb in closed form, per output channel (R, G, B) for hue h in sixths of a turn, h in [0, 6):
# channel = min + chroma * clamp(sign * |h - center| + offset, 0, 1)
_HUE_CENTER = (3.0, 2.0, 4.0)
_HUE_SIGN = (1.0, -1.0, -1.0)
_HUE_OFFSET = (-1.0, 2.0, 2.0)


def adjust_hue(img: Tensor, factor: Tensor) -> Tensor:
    """Rotate hue by `factor` turns per image, as torchvision's RGB -> HSV -> RGB round trip.

    A hue shift keeps HSV's V (= max) and chroma (= max - min), so rather than build the full HSV
    image and torchvision's six-way select, we compute the hue in sixths of a turn and use the
    closed-form hsv2rgb above. Same numbers to float rounding, a fraction of the passes over memory.
    """
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    maxc, minc = img.amax(dim=-3, keepdim=True), img.amin(dim=-3, keepdim=True)
    chroma = maxc - minc
    # torchvision's _rgb2hsv case split: red wins ties, then green; the numerators are
    # chroma * hue6, as (g - b) / chroma, 2 + (b - r) / chroma, 4 + (r - g) / chroma
    from_b = (r - g).add_(chroma, alpha=4.0)
    from_g_or_b = torch.lerp(from_b, (b - r).add_(chroma, alpha=2.0), _is_max(g, maxc))
    numerator = torch.lerp(from_g_or_b, g - b, _is_max(r, maxc))
    # gray pixels: numerator 0 (red "wins", g - b = 0), and their hue is irrelevant (chroma 0)
    hue6 = numerator.div_(chroma.clamp(min=torch.finfo(torch.float32).tiny))
    hue6.add_(_per_image(factor), alpha=6.0)
    hue6.sub_(hue6.div(6.0).floor_(), alpha=6.0)  # mod 6 (torch.remainder is ~10x slower on CPU)
    center, sign, offset = _const((_HUE_CENTER, _HUE_SIGN, _HUE_OFFSET), img.device).view(3, 1, 3, 1, 1)
    rgb_frac = (hue6 - center).abs_().mul_(sign).add_(offset).clamp_(0.0, 1.0)
    return rgb_frac.mul_(chroma).add_(minc)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def group_on_host(device: torch.device) -> bool:
    """Whether ColorJitter groups images by op, which needs the group sizes on the host.

    On the CPU reading them is free and grouping saves 3 of every 4 op evaluations. On a GPU the
    read would stall the host once per batch until the device catches up (the host could no
    longer queue work ahead), so there every op runs on every image and a 0/1 mask keeps its
    result where it was drawn: 4x the arithmetic, all of it tiny next to the model at 32 px.
    """
    return device.type == "cpu"


def color_jitter_(img: Tensor, params: AugmentParams) -> Tensor:
    """ColorJitter, in place, on the images whose `params.jitter` is set, each in its own op order.

    At step k every image runs op `order[:, k]`. On the CPU we group the images by that op so each
    op runs once per step on just its own images (4 op evaluations per image in all, not 16 with
    masks); elsewhere the masked form, which never reads a value back (see `group_on_host`).
    In place because every full-batch allocation costs page faults on the CPU.
    """
    skip = len(_JITTER_OPS)  # pseudo-op for images that drew no jitter
    code = torch.where(params.jitter.unsqueeze(1), params.order, skip)  # [N, 4]
    factors = torch.stack((params.brightness, params.contrast, params.saturation, params.hue), 1)
    if not group_on_host(img.device):
        for step in range(4):
            for op, adjust in enumerate(_JITTER_OPS):
                # lerp with a 0/1 weight is an exact select
                img.lerp_(adjust(img, factors[:, op]), _per_image(code[:, step] == op))
        return img
    steps = torch.arange(4, device=code.device) * (skip + 1)
    counts = torch.bincount((code + steps).flatten(), minlength=4 * (skip + 1)).view(4, skip + 1).tolist()
    for step in range(4):
        by_op = torch.argsort(code[:, step], stable=True)
        start = 0
        for op, count in enumerate(counts[step][:skip]):
            if count:
                idx = by_op[start : start + count]
                img.index_copy_(0, idx, _JITTER_OPS[op](img.index_select(0, idx), factors[idx, op]))
            start += count
    return img


# --- crop, resize and flip ---------------------------------------------------------------------


def _source_coords(start: Tensor, length: Tensor, out: int) -> Tensor:
    """Input pixel coordinate sampled by each output pixel of a crop resized to `out`: [N, out].

    As F.interpolate(mode="bilinear", align_corners=False) computes it inside the crop
    (src = (dst + 0.5) * length / out - 0.5, clamped to the crop's pixels), so our result equals
    torchvision's resized_crop(antialias=False) of the same box, and never blends in pixels from
    outside the box.
    """
    dst = torch.arange(out, device=start.device, dtype=torch.float32) + 0.5
    length = length.to(torch.float32).unsqueeze(1)
    src = (dst * (length / out) - 0.5).clamp_(min=0.0)
    return torch.minimum(src, length - 1.0) + start.to(torch.float32).unsqueeze(1)


def resized_crop(img: Tensor, params: AugmentParams, size: int) -> Tensor:
    """Crop each image to its box, resize to size x size (bilinear) and flip where drawn: one grid_sample."""
    _, _, height, width = img.shape
    x = _source_coords(params.left, params.width, size)
    y = _source_coords(params.top, params.height, size)
    # flipping the resized crop = reading its columns right to left
    x = torch.where(params.flip.unsqueeze(1), x.flip(1), x)
    # pixel p -> grid_sample's normalized coordinate with align_corners=False: (2p + 1) / W - 1
    gx = (2.0 * x + 1.0) / width - 1.0
    gy = (2.0 * y + 1.0) / height - 1.0
    grid = torch.empty(len(params), size, size, 2, device=img.device)  # [N, S, S, (x, y)]
    grid[..., 0] = gx.unsqueeze(1)
    grid[..., 1] = gy.unsqueeze(2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- the batched augmentation ------------------------------------------------------------------


class BatchedAugment:
    """SimCLR augmentation of whole batches on their own device, each image with its own draw."""

    def __init__(self, image_size: int, jitter_strength: float = 1.0):
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        # The config's own limit (RunConfig never lets a larger one through): hue's range 0.2s must
        # stay within ColorJitter's [-0.5, 0.5].
        if not 0.0 <= jitter_strength <= JITTER_STRENGTH_MAX:
            raise ValueError(f"jitter_strength must be in [0, {JITTER_STRENGTH_MAX}], got {jitter_strength}")
        self.image_size = image_size
        self.jitter_strength = jitter_strength
        # ColorJitter(b, c, s, h) draws each of b, c, s from [max(0, 1 - x), 1 + x] and hue from [-h, h]
        bcs = (max(0.0, 1.0 - 0.8 * jitter_strength), 1.0 + 0.8 * jitter_strength)
        self.factor_ranges = (bcs, bcs, bcs, (-0.2 * jitter_strength, 0.2 * jitter_strength))

    def sample_params(
        self,
        n: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> AugmentParams:
        """Draw every random choice for n images of height x width; returned on `device`."""
        # draw where the generator lives (a CPU generator cannot fill CUDA tensors), then move
        draw = generator.device if generator is not None else torch.device(device)
        top, left, h, w = sample_crop_boxes(n, height, width, generator=generator, device=draw)
        u = torch.rand(n, 7, generator=generator, device=draw)
        lo, hi = _const(tuple(zip(*self.factor_ranges)), draw)
        factors = lo + (hi - lo) * u[:, 3:7]
        # argsort of i.i.d. uniforms is a uniformly random permutation per row (ColorJitter's randperm(4))
        order = torch.argsort(torch.rand(n, 4, generator=generator, device=draw), dim=1)
        params = AugmentParams(
            top=top,
            left=left,
            height=h,
            width=w,
            flip=u[:, 0] < FLIP_P,
            jitter=u[:, 1] < JITTER_P,
            brightness=factors[:, BRIGHTNESS],
            contrast=factors[:, CONTRAST],
            saturation=factors[:, SATURATION],
            hue=factors[:, HUE],
            order=order,
            grayscale=u[:, 2] < GRAYSCALE_P,
        )
        return params.to(device)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Augment with given parameters: uint8 or [0, 1] float [N, 3, H, W] -> float32 [N, 3, S, S]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [N, 3, H, W], got {list(images.shape)}")
        if len(params) != images.shape[0]:
            raise ValueError(f"{len(params)} parameter sets for {images.shape[0]} images")
        params = params.to(images.device)  # no-op when already there (e.g. preview params drawn on CPU)
        # uint8 -> [0, 1] as ToTensor does, at input resolution (grid_sample needs floats anyway)
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        x = resized_crop(x, params, self.image_size)
        x = color_jitter_(x, params)
        # lerp with a 0/1 weight is an exact select, and far faster than torch.where on the CPU
        return x.lerp_(rgb_to_grayscale(x).expand_as(x), _per_image(params.grayscale))

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """images: uint8 [N,3,H,W] (or float in [0,1]) on any device -> float32 [N,3,S,S] in [0,1]
        on the same device (S = image_size). Not normalized: the trainer normalizes."""
        n, _, height, width = images.shape
        return self.apply(images, self.sample_params(n, height, width, generator, images.device))


# --- the seed's per-image torchvision pipeline (reference backend) -------------------------------


def reference_transform(image_size: int, jitter_strength: float = 1.0) -> T.Compose:
    """torchvision's per-image pipeline exactly as Spijkervet/SimCLR's TransformsSimCLR wrote it.

    PIL image in, float tensor in [0, 1] out."""
    s = jitter_strength
    color_jitter = T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    return T.Compose(
        [
            T.RandomResizedCrop(size=image_size),
            T.RandomHorizontalFlip(),  # p=0.5
            T.RandomApply([color_jitter], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
        ]
    )


class ReferenceTwoViews(Dataset):
    """Two independently augmented views of each image via PIL, as the seed's DataLoader produced them."""

    def __init__(self, images: Tensor, image_size: int, jitter_strength: float = 1.0):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} {list(images.shape)}")
        # HWC numpy once, so each item is just Image.fromarray (the per-image PIL decode the seed paid)
        self.images = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.transform = reference_transform(image_size, jitter_strength)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = Image.fromarray(self.images[index])
        return self.transform(image), self.transform(image)
