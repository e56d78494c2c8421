"""Pictures of detections: masks blended where pasted, nothing drawn far away, low scores hidden."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pointsup.evaluation import draw_detections, save_overlay
from pointsup.modeling.postprocess import paste_masks
from pointsup.structures import Detections
from pointsup.visualize import PALETTE

NAMES = ["ring", "star"]


def grey_image(height: int = 120, width: int = 160) -> torch.Tensor:
    return torch.full((3, height, width), 128, dtype=torch.uint8)


def detections(scores: list[float]) -> Detections:
    """Two disc masks in boxes at the top left and in the middle of a 160x120 image
    (drawn in PALETTE order by descending score)."""
    grid = torch.linspace(-1, 1, 28)
    disc = ((grid[:, None] ** 2 + grid[None, :] ** 2) < 0.6).float()
    return Detections(
        boxes=torch.tensor([[10.0, 30.0, 50.0, 70.0], [70.0, 40.0, 110.0, 90.0]]),
        scores=torch.tensor(scores),
        classes=torch.tensor([0, 1]),
        mask_probs=torch.stack([disc, disc]),
        image_size=(120, 160),
    )


def test_masks_change_colour_and_far_pixels_do_not():
    dets = detections([0.93, 0.8])
    drawn = np.asarray(draw_detections(grey_image(), dets, NAMES))
    assert drawn.shape == (120, 160, 3)
    masks = paste_masks(dets.mask_probs, dets.boxes, dets.image_size).numpy()
    for k, (x0, y0, x1, y1) in enumerate(dets.boxes.int().tolist()):
        centre = drawn[(y0 + y1) // 2, (x0 + x1) // 2]
        assert masks[k, (y0 + y1) // 2, (x0 + x1) // 2] and np.abs(centre.astype(int) - 128).max() > 20
    far = np.ones((120, 160), dtype=bool)
    for x0, y0, x1, y1 in dets.boxes.int().tolist():
        far[max(0, y0 - 16) : y1 + 4, max(0, x0 - 4) : max(x1, x0 + 70) + 4] = False  # box, outline, label above
    assert far.mean() > 0.5 and (drawn[far] == 128).all()
    # a mask is one flat tint, between the grey and its palette colour
    tints = np.unique(drawn[masks[1]].reshape(-1, 3), axis=0)
    assert len(tints) == 1
    assert np.all((tints[0] >= np.minimum(128, PALETTE[1])) & (tints[0] <= np.maximum(128, PALETTE[1])))


def test_score_threshold_hides_low_scoring_detections():
    dets = detections([0.93, 0.2])
    drawn = np.asarray(draw_detections(grey_image(), dets, NAMES, score_threshold=0.5))
    assert (drawn[40:90, 70:111] == 128).all()  # the second box and its mask are absent
    assert (drawn[50, 30] != 128).any()
    everything = np.asarray(draw_detections(grey_image(), dets, NAMES, score_threshold=0.1))
    assert (everything[65, 90] != 128).any()


def test_same_input_gives_the_same_picture_and_pil_input_works():
    dets = detections([0.6, 0.9])
    first = np.asarray(draw_detections(grey_image(), dets, NAMES))
    pil = Image.fromarray(grey_image().permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(np.asarray(draw_detections(pil, dets, NAMES)), first)


def test_boxes_only_and_no_detections():
    dets = detections([0.9, 0.9])
    boxes_only = Detections(dets.boxes, dets.scores, dets.classes, None, dets.image_size)
    drawn = np.asarray(draw_detections(grey_image(), boxes_only, NAMES))
    assert (drawn[50, 30] == 128).all() and (drawn[50, 10] != 128).any()  # box outline, no fill
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28), (120, 160))
    assert (np.asarray(draw_detections(grey_image(), empty, NAMES)) == 128).all()


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match="160x120"):
        draw_detections(grey_image(100, 100), detections([0.9, 0.9]), NAMES)


def test_save_overlay_writes_a_png(tmp_path):
    path = save_overlay(tmp_path / "sub" / "overlay.png", grey_image(), detections([0.9, 0.7]), {0: "ring", 1: "star"})
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (160, 120)
        np.testing.assert_array_equal(
            np.asarray(image.convert("RGB")), np.asarray(draw_detections(grey_image(), detections([0.9, 0.7]), NAMES))
        )
