"""Running an exported model with onnxruntime and NumPy only (no PyTorch; of pointsup, only
:mod:`pointsup.deploy.resize`).

The steps beside the graph (docs/deployment.md):

1. **Resize** the (H, W, 3) uint8 RGB image so its short side is the model's ``min_size_test``
   and its long side at most ``max_size_test`` (detectron2's rule, :func:`shortest_edge_size`),
   bilinearly with antialiasing, exactly as PyTorch's uint8 kernel does it in ``pointsup predict``
   (:func:`pointsup.deploy.resize.resize_like_torch`, NumPy only).
2. **Run** the graph on the (1, 3, h, w) float32 image: it normalises, pads, detects and returns
   boxes, scores, classes and box-relative mask probabilities (K, M, M).
3. **Scale** the boxes back to the input image: x by ``W / w``, y by ``H / h``.
4. **Paste** each mask (:func:`paste_mask`): pixel ``(i, j)`` reads the M x M grid bilinearly at
   ``u = (j + 0.5 - x0) / (x1 - x0)``, ``v = (i + 0.5 - y0) / (y1 - y0)`` (grid cell centres at
   ``(k + 0.5) / M``, zero outside) and is on iff the value is ``>= 0.5``: what
   ``pointsup.modeling.postprocess.paste_masks`` computes with ``grid_sample``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointsup.data.sizes import shortest_edge_size
from pointsup.deploy.resize import resize_like_torch

#: Key of the exporter's JSON metadata in the ONNX file (``pointsup.deploy.export.METADATA_KEY``).
METADATA_KEY = "pointsup"


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 → (height, width, 3) uint8, PyTorch's antialiased bilinear resize
    reproduced pixel for pixel; unchanged when the size is already right."""
    if image.shape[:2] == (height, width):
        return image
    return resize_like_torch(image, height, width)


def _interpolation_matrix(centres: np.ndarray, start: float, end: float, grid: int) -> np.ndarray:
    """(len(centres), grid) weights reading a grid of ``grid`` cells over ``[start, end]`` at the
    pixel centres: bilinear, ``align_corners=False``, zero outside (``grid_sample``'s rule)."""
    position = ((centres - start) / (end - start) * 2.0 - 1.0 + 1.0) * grid / 2.0 - 0.5
    position = position.astype(np.float32)
    low = np.floor(position)
    frac = position - low
    low_index = low.astype(np.int64)
    weights = np.zeros((len(centres), grid), dtype=np.float32)
    rows = np.arange(len(centres))
    for offset, weight in ((0, 1.0 - frac), (1, frac)):
        index = low_index + offset
        inside = (index >= 0) & (index < grid)
        weights[rows[inside], index[inside]] += weight[inside]
    return weights


def paste_mask(probs: np.ndarray, box: np.ndarray, image_size: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """One box-relative (M, M) probability grid → an (H, W) bool mask of the image.

    Only the pixel window that can be on is computed: centres within half a grid cell of the box.
    """
    height, width = image_size
    mask = np.zeros((height, width), dtype=bool)
    grid = probs.shape[0]
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        return mask
    half_x, half_y = 0.5 * (x1 - x0) / grid, 0.5 * (y1 - y0) / grid
    left, right = int(np.clip(np.floor(x0 - half_x) - 1, 0, width)), int(np.clip(np.ceil(x1 + half_x) + 1, 0, width))
    top, bottom = int(np.clip(np.floor(y0 - half_y) - 1, 0, height)), int(np.clip(np.ceil(y1 + half_y) + 1, 0, height))
    if right <= left or bottom <= top:
        return mask
    rows = _interpolation_matrix(np.arange(top, bottom, dtype=np.float32) + 0.5, y0, y1, grid)
    cols = _interpolation_matrix(np.arange(left, right, dtype=np.float32) + 0.5, x0, x1, grid)
    mask[top:bottom, left:right] = rows @ probs.astype(np.float32) @ cols.T >= threshold
    return mask


@dataclass
class OnnxPrediction:
    """The detections of one image (as ``pointsup.Prediction``): boxes (N, 4) float32 xyxy in
    input pixels, scores (N,), labels (N,) contiguous class indices, class_ids (N,) category
    ids, class_names, masks (N, H, W) bool (or None), mask_probs (N, M, M) box-relative."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None
    mask_probs: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class GraphPredictor:
    """The steps beside an exported graph (resize, run, scale, paste); subclasses run the graph.

    Args:
        metadata: the exporter's JSON metadata (categories, test size, mask threshold).
        score_threshold: detections below this score are dropped.
        paste: paste full-size masks (False: only the box-relative ``mask_probs``).
    """

    def __init__(self, metadata: dict[str, Any], score_threshold: float = 0.5, paste: bool = True):
        self.metadata = metadata
        self.score_threshold = score_threshold
        self.paste = paste

    def run_graph(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The graph's raw outputs for an (h, w, 3) uint8 image already at the test size: boxes
        (K, 4) in its coordinates, scores (K,), classes (K,), mask_probs (K, M, M)."""
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> OnnxPrediction:
        """Detections of an (H, W, 3) uint8 RGB image, in its pixels."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image must be (H, W, 3) uint8 RGB, got shape {image.shape} and dtype {image.dtype}")
        height, width = image.shape[:2]
        meta = self.metadata
        new_height, new_width = shortest_edge_size(height, width, meta["min_size_test"], meta["max_size_test"])
        boxes, scores, classes, probs = self.run_graph(resize_rgb(image, new_height, new_width))
        keep = scores >= self.score_threshold
        boxes = boxes[keep] * np.array([width / new_width, height / new_height] * 2, dtype=np.float32)
        scores, classes, probs = scores[keep], classes[keep].astype(np.int64), probs[keep]
        masks = None
        if self.paste:
            masks = np.zeros((len(boxes), height, width), dtype=bool)
            for k in range(len(boxes)):
                masks[k] = paste_mask(probs[k], boxes[k], (height, width), meta["mask_threshold"])
        return OnnxPrediction(
            boxes=boxes.astype(np.float32),
            scores=scores,
            labels=classes,
            class_ids=np.array([meta["category_ids"][k] for k in classes], dtype=np.int64),
            class_names=[meta["category_names"][k] for k in classes],
            masks=masks,
            mask_probs=probs,
            image_size=(height, width),
        )


class OnnxPredictor(GraphPredictor):
    """An exported model run by onnxruntime on the CPU.

    Args:
        path: the ``.onnx`` file written by ``pointsup export``.
        score_threshold: detections below this score are dropped.
        threads: onnxruntime intra-op threads (0: its default).
        paste: paste full-size masks (False: only the box-relative ``mask_probs``).
    """

    def __init__(self, path: str | os.PathLike[str], score_threshold: float = 0.5, threads: int = 0, paste: bool = True):
        import onnxruntime as ort  # here, so that the TorchScript runner does not need it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{path}: no pointsup metadata in this ONNX file (export it with `pointsup export`)")
        super().__init__(json.loads(meta[METADATA_KEY]), score_threshold, paste)

    def run_graph(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        boxes, scores, classes, probs = self.session.run(None, {"image": tensor})
        return boxes, scores, classes, probs
