"""CondInst's mask branch: a shared, instance-agnostic feature map at stride 8 that every
instance's dynamic mask head reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from pointsup.modeling.backbone import norm_factory
from pointsup.modeling.condinst.config import MaskBranchConfig

if TYPE_CHECKING:
    from typing import Self


def _conv_norm_relu(in_channels: int, out_channels: int, norm: Callable[[int], nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None)]
    if norm is not None:
        layers.append(norm(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MaskBranch(nn.Module):
    """p3, p4, p5 -> (B, out_channels, H/8, W/8).

    Each input level is refined by a 3x3 conv, upsampled (bilinear, ``align_corners=False``,
    which keeps the cell centres of the continuous convention aligned) to p3's size and summed;
    ``num_convs`` 3x3 convs follow, then a 1x1 conv to ``out_channels``.

    Args:
        in_channels: FPN channels.
        channels: width of the branch (128 in CondInst).
        out_channels: channels handed to the dynamic heads (8 in CondInst).
        num_convs: convs after the sum (4 in CondInst).
        num_levels: how many of the finest levels are read (3: p3-p5).
        norm: normalisation layer constructor (None: none).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int,
        num_convs: int,
        num_levels: int = 3,
        norm: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        self.refine = nn.ModuleList([_conv_norm_relu(in_channels, channels, norm) for _ in range(num_levels)])
        self.tower = nn.Sequential(*[_conv_norm_relu(channels, channels, norm) for _ in range(num_convs)])
        self.output = nn.Conv2d(channels, out_channels, 1)
        self.out_channels = out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, config: MaskBranchConfig, in_channels: int) -> Self:
        """The branch of the ``model.condinst.mask_branch`` section, on p3-p5 of ``in_channels``."""
        return cls(in_channels, config.channels, config.out_channels, config.num_convs, 3, norm_factory(config.norm))

    def forward(self, levels: list[Tensor]) -> Tensor:
        """``levels``: the finest pyramid maps first, each (B, in_channels, H_l, W_l)."""
        summed = self.refine[0](levels[0])
        for refine, level in zip(self.refine[1:], levels[1:]):
            summed = summed + F.interpolate(refine(level), size=summed.shape[-2:], mode="bilinear", align_corners=False)
        return self.output(self.tower(summed))
