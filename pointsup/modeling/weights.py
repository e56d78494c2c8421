"""Loading published or earlier-trained weights into a :class:`MaskRCNN`.

Accepted sources:

* a pointsup checkpoint (``{"model": state_dict, ...}``), e.g. to fine-tune or self-train;
* torchvision's COCO Mask R-CNN (``"coco"`` for the weight enum, which downloads once into the
  torch hub cache, or a local file holding that state dict). Backbone, FPN, RPN and box head
  transfer as they are; the mask head is renamed onto ours. The class-specific layers (box
  classifier, box regressor, mask predictor) transfer row by row when the dataset's category ids
  are COCO ids; otherwise they stay freshly initialised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from pointsup.errors import PointsupError

log = logging.getLogger(__name__)


class WeightsError(PointsupError, ValueError):
    """A weights file that cannot be read, or does not fit the model (``model.weights``)."""


#: torchvision's COCO Mask R-CNN predicts 91 "category id" slots (0 = background).
TORCHVISION_COCO_SLOTS = 91
CLASS_SPECIFIC_KEYS = (
    "roi_heads.box_predictor.cls_score",
    "roi_heads.box_predictor.bbox_pred",
    "roi_heads.point_mask_head.layers.predictor",
)


def _torchvision_mask_key(key: str) -> str:
    """torchvision mask-head parameter name → ours."""
    match = re.match(r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$", key)
    if match:
        return f"roi_heads.point_mask_head.layers.mask_fcn{int(match.group(1)) + 1}.{match.group(2)}"
    key = key.replace("roi_heads.mask_predictor.conv5_mask", "roi_heads.point_mask_head.layers.deconv")
    return key.replace("roi_heads.mask_predictor.mask_fcn_logits", "roi_heads.point_mask_head.layers.predictor")


def _class_rows(key: str, tensor: Tensor, category_ids: Sequence[int]) -> Tensor:
    """Rows of a torchvision class-specific tensor for our contiguous classes."""
    if key.endswith("cls_score.weight") or key.endswith("cls_score.bias"):
        index = [0] + [int(c) for c in category_ids]
    elif "bbox_pred" in key:
        index = [4 * slot + k for slot in [0] + [int(c) for c in category_ids] for k in range(4)]
    else:  # mask predictor: no background slot in ours
        index = [int(c) for c in category_ids]
    return tensor[index]


def convert_torchvision_maskrcnn(state: dict[str, Tensor], category_ids: Sequence[int] | None) -> dict[str, Tensor]:
    """torchvision ``maskrcnn_resnet50_fpn`` state dict → ours.

    Args:
        category_ids: the COCO category id of each of our labels; None (or ids beyond the 91
            slots) drops the class-specific layers.
    """
    converted = {}
    usable_ids = category_ids is not None and all(0 < int(c) < TORCHVISION_COCO_SLOTS for c in category_ids)
    for key, tensor in state.items():
        ours = _torchvision_mask_key(key)
        if ours.startswith(CLASS_SPECIFIC_KEYS):
            if not usable_ids:
                continue
            tensor = _class_rows(ours, tensor, category_ids)  # type: ignore[arg-type]
        converted[ours] = tensor
    return converted


def _read_state(source: str) -> dict[str, Tensor]:
    if source == "coco":
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

        return MaskRCNN_ResNet50_FPN_Weights.COCO_V1.get_state_dict(progress=True)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file makes the unpickler raise anything
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{path}: cannot read weights ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict or a pointsup checkpoint")
    return state


def load_model_weights(model: nn.Module, source: str, category_ids: Sequence[int] | None = None) -> None:
    """Load ``source`` ("coco", a torchvision state dict file, or a pointsup checkpoint).

    Raises:
        WeightsError: the file cannot be read or does not fit this model (names the first
            mismatching parameter and counts them).
    """
    state = _read_state(source)
    own = model.state_dict()
    if any(k.startswith("roi_heads.mask_predictor") for k in state):
        state = convert_torchvision_maskrcnn(state, category_ids)
        other_head = [k for k in state if k.startswith("roi_heads.point_mask_head.") and k not in own]
        if other_head:  # e.g. a PointRend model initialised from torchvision's Mask R-CNN: its mask head is not ours
            log.info(
                "%s: the Mask R-CNN mask head (%d tensors) does not fit this model's mask head; left out", source, len(other_head)
            )
            state = {k: v for k, v in state.items() if k not in other_head}
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        raise WeightsError(f"{source}: {len(mismatched)} weights do not fit the model (e.g. {mismatched[0]})")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise WeightsError(f"{source}: {len(unexpected)} parameters the model does not have (e.g. {unexpected[0]!r})")
    if missing:
        log.info("%s: %d parameters keep their initialisation (e.g. %s)", source, len(missing), missing[:3])
