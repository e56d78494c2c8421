"""The input statistics each backbone family's pretrained weights were trained with (torch-free,
so that the config reads them without loading the models).

A network sees ``(image - pixel_mean) / pixel_std`` per RGB channel, on the 0-255 scale. These
statistics belong to the weights, as torchvision's weight metadata carries them: the config fills
``model.pixel_mean`` / ``pixel_std`` from here when they are not given, and refuses other values
together with published weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

#: one value per RGB channel
Triple = tuple[float, float, float]


@dataclass(frozen=True)
class InputNormalization:
    """Per-channel RGB statistics on the 0-255 scale."""

    pixel_mean: Triple
    pixel_std: Triple


#: torchvision's ImageNet statistics: its ResNet / ResNeXt weights and its COCO Mask R-CNN.
TORCHVISION_NORMALIZATION = InputNormalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
#: The TensorFlow EfficientNet-Lite weights: input scaled to [-1, 1].
LITE_NORMALIZATION = InputNormalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))

#: Backbone name prefix -> the statistics of its published weights.
FAMILY_NORMALIZATION = {
    "efficientnet_lite": LITE_NORMALIZATION,
    "resnet": TORCHVISION_NORMALIZATION,
    "resnext": TORCHVISION_NORMALIZATION,
}


def input_normalization(backbone: str) -> InputNormalization:
    """The pixel statistics ``backbone``'s published weights expect."""
    for prefix, normalization in FAMILY_NORMALIZATION.items():
        if backbone.startswith(prefix):
            return normalization
    raise ValueError(f"no input statistics known for backbone {backbone!r}")


def resolve_normalization(
    backbone: str, pixel_mean: Sequence[float] | None = None, pixel_std: Sequence[float] | None = None
) -> InputNormalization:
    """The statistics a model normalises its input with: each value given, else the backbone's own."""
    own = input_normalization(backbone)
    mean = own.pixel_mean if pixel_mean is None else cast(Triple, tuple(pixel_mean))
    std = own.pixel_std if pixel_std is None else cast(Triple, tuple(pixel_std))
    return InputNormalization(mean, std)
