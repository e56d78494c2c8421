"""``pointsup export``: a trained checkpoint to an ONNX graph that onnxruntime runs alone, or to
a traced TorchScript module.

The graph is :class:`~pointsup.deploy.graph.MaskRCNNGraph` (Mask R-CNN with any of its three mask
heads) or :class:`~pointsup.deploy.condinst_graph.CondInstGraph`: normalisation, padding,
detection, NMS and the masks inside; resizing, box scaling and mask pasting beside it, in
:mod:`pointsup.deploy.onnx_runner`. What the runner needs besides the graph (category names and
ids, the test size, the mask threshold) is stored as JSON in the ONNX file's metadata under
:data:`METADATA_KEY`, or in the TorchScript archive as the extra file :data:`TORCHSCRIPT_METADATA`,
so the exported file is the whole deployment.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from pointsup.deploy.condinst_graph import CondInstGraph
from pointsup.deploy.graph import MaskRCNNGraph
from pointsup.engine.predictor import MASK_THRESHOLD, TrainedModel, load_trained_model
from pointsup.errors import PointsupError
from pointsup.modeling.condinst.model import CondInst
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
#: Export formats ``pointsup export`` knows.
FORMATS = ("onnx", "torchscript")
#: Name of the JSON metadata inside a TorchScript archive (``torch.jit.load(_extra_files=...)``).
TORCHSCRIPT_METADATA = "pointsup.json"


class ExportError(PointsupError, ValueError):
    """A model or format that cannot be exported (yet); the message says which."""


def deployment_metadata(trained: TrainedModel) -> dict[str, Any]:
    """What the runner needs besides the graph: categories, test size and mask settings."""
    data = trained.config.data
    return {
        "format_version": 1,
        "architecture": trained.config.model.architecture,
        "mask_head": trained.config.model.mask_head.name,
        "category_names": list(trained.category_names),
        "category_ids": [int(c) for c in trained.label_to_category_id],
        "min_size_test": int(data.min_size_test),
        "max_size_test": int(data.max_size_test),
        "mask_threshold": MASK_THRESHOLD,
        "masks": "box_relative",
    }


def export_graph(trained: TrainedModel) -> MaskRCNNGraph | CondInstGraph:
    """The exportable module of a trained model.

    Raises:
        ExportError: a model the exporter does not cover yet (named in the message).
    """
    model = trained.model
    if isinstance(model, MaskRCNN) and model.roi_heads.point_mask_head is not None:
        return MaskRCNNGraph(model).eval()
    if isinstance(model, CondInst):
        return CondInstGraph(model).eval()
    kind = f"{trained.config.model.architecture} / mask head {trained.config.model.mask_head.name}"
    raise ExportError(f"export covers Mask R-CNN (with a mask head) and CondInst, not {kind}")


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


def torchscript_bytes(trained: TrainedModel) -> bytes:
    """The serialised TorchScript module of a trained model on the CPU (``torch.jit.trace`` of the
    same graph as the ONNX export, traced on the same example), metadata included as the extra
    file :data:`TORCHSCRIPT_METADATA`. Loading it needs torch and torchvision (for NMS and
    RoIAlign), not pointsup."""
    graph = export_graph(trained).to("cpu")
    side = int(trained.config.data.min_size_test)
    example = torch.full((1, 3, side, side), 128.0)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it freezes (checked by the parity tests)
        traced = torch.jit.trace(graph, (example,), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_METADATA: json.dumps(deployment_metadata(trained))})
    return buffer.getvalue()


def export_checkpoint(weights: str | Path, output: str | Path, export_format: str = "onnx", opset: int = OPSET) -> Path:
    """Export the checkpoint ``weights`` to ``output`` (written atomically).

    Raises:
        ExportError: an unknown format or a model not covered.
        CheckpointError: ``weights`` is not a pointsup checkpoint.
    """
    if export_format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {export_format!r}")
    trained = load_trained_model(weights, "cpu")
    export_graph(trained)  # refuses an uncovered model before any tracing
    write_bytes_atomic(output, onnx_bytes(trained, opset) if export_format == "onnx" else torchscript_bytes(trained))
    return Path(output)
