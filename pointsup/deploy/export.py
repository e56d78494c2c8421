"""``pointsup export``: a trained checkpoint to an ONNX graph that onnxruntime runs alone.

The graph is :class:`~pointsup.deploy.graph.MaskRCNNGraph` (normalisation, padding, backbone,
RPN, box decoding, NMS and the mask head inside; resizing, box scaling and mask pasting beside it,
in :mod:`pointsup.deploy.onnx_runner`). What the runner needs besides the graph (category names
and ids, the test size, the mask threshold) is stored in the ONNX file's metadata under
:data:`METADATA_KEY`, as JSON, so the ``.onnx`` file is the whole deployment.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from pointsup.deploy.graph import MaskRCNNGraph
from pointsup.engine.predictor import MASK_THRESHOLD, TrainedModel, load_trained_model
from pointsup.errors import PointsupError
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNMaskHead
from pointsup.modeling.mask_rcnn import MaskRCNN
from pointsup.utils.atomic import write_bytes_atomic

#: ONNX opset of the exported graphs: onnxruntime's CPU provider implements every operator of
#: the graph at this opset (RoiAlign with half-pixel alignment needs 16 or later).
OPSET = 17
#: Key of the JSON metadata in the ONNX file (``custom_metadata_map`` in onnxruntime).
METADATA_KEY = "pointsup"
#: Graph input and output names.
INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["boxes", "scores", "classes", "mask_probs"]
#: Export formats ``pointsup export`` knows, and those implemented so far.
FORMATS = ("onnx", "torchscript")


class ExportError(PointsupError, ValueError):
    """A model or format that cannot be exported (yet); the message says which."""


def deployment_metadata(trained: TrainedModel) -> dict[str, Any]:
    """What the runner needs besides the graph: categories, test size and mask settings."""
    data = trained.config.data
    return {
        "format_version": 1,
        "architecture": trained.config.model.architecture,
        "mask_head": trained.config.model.mask_head,
        "category_names": list(trained.category_names),
        "category_ids": [int(c) for c in trained.label_to_category_id],
        "min_size_test": int(data.min_size_test),
        "max_size_test": int(data.max_size_test),
        "mask_threshold": MASK_THRESHOLD,
        "masks": "box_relative",
    }


def export_graph(trained: TrainedModel) -> MaskRCNNGraph:
    """The exportable module of a trained model.

    Raises:
        ExportError: a model the exporter does not cover yet (named in the message).
    """
    model = trained.model
    if not isinstance(model, MaskRCNN) or not isinstance(model.roi_heads.point_mask_head, MaskRCNNMaskHead):
        kind = f"{trained.config.model.architecture} / mask head {trained.config.model.mask_head}"
        raise ExportError(f"ONNX export covers Mask R-CNN with the maskrcnn mask head so far, not {kind}")
    return MaskRCNNGraph(model).eval()


def onnx_bytes(trained: TrainedModel, opset: int = OPSET) -> bytes:
    """The serialised ONNX model of a trained model on the CPU, metadata included.

    The graph is traced on a mid-grey image at the model's test size; its input height and width
    are dynamic, and so is the number of detections."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'pointsup[deploy]'") from None
    graph = export_graph(trained).to("cpu")
    side = int(trained.config.data.min_size_test)
    example = torch.full((1, 3, side, side), 128.0)
    dynamic = {"image": {2: "height", 3: "width"}, **{name: {0: "detections"} for name in OUTPUT_NAMES}}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), torch.no_grad():
        traced = Path(folder) / "model.onnx"
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it freezes (checked by the parity tests)
        torch.onnx.export(
            graph,
            (example,),
            traced,
            dynamo=False,
            opset_version=opset,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=dynamic,
        )
        proto = onnx.load(traced)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(deployment_metadata(trained))
    return proto.SerializeToString()


def export_checkpoint(weights: str | Path, output: str | Path, export_format: str = "onnx", opset: int = OPSET) -> Path:
    """Export the checkpoint ``weights`` to ``output`` (written atomically).

    Raises:
        ExportError: an unknown format or a model not covered yet.
        CheckpointError: ``weights`` is not a pointsup checkpoint.
    """
    if export_format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {export_format!r}")
    if export_format != "onnx":
        raise ExportError(f"--format {export_format} is not implemented yet; --format onnx is")
    trained = load_trained_model(weights, "cpu")
    write_bytes_atomic(output, onnx_bytes(trained, opset))
    return Path(output)
