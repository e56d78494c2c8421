"""Running a TorchScript export (``pointsup export --format torchscript``): the traced graph with
torch and torchvision, the steps beside it as :mod:`pointsup.deploy.onnx_runner` does them."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torchvision  # noqa: F401  (registers the torchvision::nms and roi_align operators the archive calls)

from pointsup.deploy.onnx_runner import GraphPredictor

#: Name of the JSON metadata inside the archive (``pointsup.deploy.export.TORCHSCRIPT_METADATA``).
TORCHSCRIPT_METADATA = "pointsup.json"


class TorchScriptPredictor(GraphPredictor):
    """An exported TorchScript module run on the CPU.

    Args:
        path: the ``.pt`` file written by ``pointsup export --format torchscript``.
        score_threshold: detections below this score are dropped.
        threads: torch intra-op threads (0: leave torch's setting).
        paste: paste full-size masks (False: only the box-relative ``mask_probs``).
    """

    def __init__(self, path: str | os.PathLike[str], score_threshold: float = 0.5, threads: int = 0, paste: bool = True):
        extra = {TORCHSCRIPT_METADATA: ""}
        self.module = torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
        if not extra[TORCHSCRIPT_METADATA]:
            raise ValueError(f"{path}: no pointsup metadata in this TorchScript file (export it with `pointsup export`)")
        if threads:
            torch.set_num_threads(threads)
        super().__init__(json.loads(extra[TORCHSCRIPT_METADATA]), score_threshold, paste)

    def run_graph(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
        with torch.no_grad():
            outputs = self.module(tensor)
        boxes, scores, classes, probs = (output.numpy() for output in outputs)
        return boxes, scores, classes, probs
