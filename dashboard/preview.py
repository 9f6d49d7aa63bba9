"""Augmentation preview: a few images of the chosen dataset, each with two views drawn by the very
code the engine trains with (engine.simclr.augment.BatchedAugment).

The only place the dashboard touches the engine or torch, and only when the user asks for a
preview: the imports are inside the function so that the dashboard starts without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from db.config import RunConfig


@dataclass(frozen=True)
class Preview:
    labels: list[str]
    originals: np.ndarray  # uint8 [N, H, W, 3]
    view1: np.ndarray  # uint8 [N, S, S, 3]
    view2: np.ndarray


def _hwc(images) -> np.ndarray:  # noqa: ANN001  (a torch tensor; torch is not imported at module level)
    if images.dtype.is_floating_point:
        images = (images.clamp(0, 1) * 255).round().to(dtype=__import__("torch").uint8)
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


# A few small previews are kept (each is n images at most 512x512); the data set behind one is not.
@st.cache_data(show_spinner="Drawing augmented views...", max_entries=4, ttl=600)
def draw(config: dict, n: int = 6, seed: int = 0) -> Preview:
    """Load the dataset as a run would, pick n test images, augment each twice."""
    import torch

    from engine.simclr.augment import BatchedAugment
    from engine.simclr.data import load_dataset

    cfg = RunConfig.from_dict(config)
    # The subset only concerns pretraining images; remember=False: a web server must not keep every
    # data set x image size anyone previewed in memory for good.
    data = load_dataset(cfg.replace(subset_size=None), remember=False)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.test_images), generator=generator)[:n]
    images = data.test_images[idx]
    augment = BatchedAugment(cfg.image_size, cfg.jitter_strength)
    torch.manual_seed(seed)  # the views are random by design; the same request shows the same views
    view1, view2 = augment(images), augment(images)
    labels = [data.classes[int(data.test_labels[i])] for i in idx]
    return Preview(labels, _hwc(images), _hwc(view1), _hwc(view2))


def show(preview: Preview) -> None:
    cols = st.columns(len(preview.labels))
    for i, col in enumerate(cols):
        with col:
            st.image(preview.originals[i], caption=preview.labels[i], width=96, output_format="PNG")
            st.image(preview.view1[i], caption="view 1", width=96, output_format="PNG")
            st.image(preview.view2[i], caption="view 2", width=96, output_format="PNG")
