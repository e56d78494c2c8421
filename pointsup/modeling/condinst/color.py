"""Colour affinities between neighbouring cells, as BoxInst's pairwise loss uses them.

BoxInst (Tian et al., CVPR 2021) compares each cell of the stride-s mask map with its
``K * K - 1`` dilated neighbours in CIE L*a*b* space. The conversion follows the sRGB standard
with a D65 white point, the same formulas as ``skimage.color.rgb2lab``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# sRGB (linear) -> CIE XYZ, the matrix skimage.color uses.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)
_LAB_EPSILON = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0


def _srgb_to_linear(values: Tensor) -> Tensor:
    """Undo sRGB companding of values in [0, 1]."""
    threshold = 0.04045
    curved = ((values.clamp(min=threshold) + 0.055) / 1.055) ** 2.4
    return torch.where(values > threshold, curved, values / 12.92)


def _lab_f(t: Tensor) -> Tensor:
    """The CIE L*a*b* companding function: cube root above epsilon, linear below."""
    cube_root = t.clamp(min=_LAB_EPSILON) ** (1.0 / 3.0)
    return torch.where(t > _LAB_EPSILON, cube_root, (_LAB_KAPPA * t + 16.0) / 116.0)


def rgb_to_lab(images: Tensor) -> Tensor:
    """Convert sRGB images to CIE L*a*b* (D65), as ``skimage.color.rgb2lab`` does.

    Args:
        images: (B, 3, H, W) float RGB in [0, 255] (channel order R, G, B).

    Returns:
        (B, 3, H, W) ``(L*, a*, b*)``: L* in [0, 100]; white is (100, 0, 0), black (0, 0, 0).
    """
    linear = _srgb_to_linear(images / 255.0)
    matrix = torch.tensor(_XYZ_FROM_RGB, dtype=images.dtype, device=images.device)
    white = torch.tensor(_D65_WHITE, dtype=images.dtype, device=images.device)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / white[None, :, None, None]
    fx, fy, fz = _lab_f(xyz).unbind(dim=1)
    lightness = 116.0 * fy - 16.0
    return torch.stack((lightness, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def unfold_without_centre(x: Tensor, kernel_size: int, dilation: int) -> Tensor:
    """Each cell's dilated ``K x K`` neighbourhood without the cell itself.

    Args:
        x: (B, C, H, W) floating-point map.
        kernel_size: odd K.
        dilation: spacing of the neighbours.

    Returns:
        (B, C, K * K - 1, H, W): entry ``[:, :, k, i, j]`` is ``x[:, :, i + dy, j + dx]`` for the
        k-th offset ``(dy, dx)`` of ``dilation * {-(K // 2), ..., K // 2}^2`` in row-major order
        (dy outer, dx inner) with ``(0, 0)`` left out; zero where the neighbour is off the map.
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"dilation must be positive, got {dilation}")
    batch, channels, height, width = x.shape
    size = kernel_size * kernel_size
    unfolded = F.unfold(x, kernel_size=kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2))
    unfolded = unfolded.reshape(batch, channels, size, height, width)
    return torch.cat((unfolded[:, :, : size // 2], unfolded[:, :, size // 2 + 1 :]), dim=2)


def color_similarity(images_lab: Tensor, valid: Tensor, kernel_size: int = 3, dilation: int = 2, theta: float = 2.0) -> Tensor:
    """Colour similarity of each cell with its neighbours.

    Args:
        images_lab: (B, 3, H, W) L*a*b* images (see :func:`rgb_to_lab`).
        valid: (B, H, W) 1 inside the unpadded image, 0 in the padding.
        kernel_size, dilation: the neighbourhood (see :func:`unfold_without_centre`).
        theta: colour distance scale.

    Returns:
        (B, K * K - 1, H, W) ``exp(-||lab(centre) - lab(neighbour)||_2 / theta)`` times the
        neighbour's validity (zero for neighbours in the padding or off the map).
    """
    neighbours = unfold_without_centre(images_lab, kernel_size, dilation)
    distance = torch.linalg.vector_norm(images_lab[:, :, None] - neighbours, dim=1)
    neighbour_valid = unfold_without_centre(valid[:, None].to(images_lab.dtype), kernel_size, dilation)[:, 0]
    return torch.exp(-distance / theta) * neighbour_valid


def downsample_for_pairwise(images: Tensor, valid: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """The L*a*b* image and validity on the stride-s mask grid.

    Args:
        images: (B, 3, H, W) float RGB in [0, 255] of the padded batch; H and W must be
            multiples of ``stride`` (the padded batch size is).
        valid: (B, H, W) 1 inside each unpadded image, 0 in the padding.
        stride: output stride of the mask map (4 in CondInst).

    Returns:
        ``(lab, valid)``: (B, 3, H / s, W / s) L*a*b* of the ``s x s`` average-pooled RGB image,
        and (B, H / s, W / s) validity read at pixel ``(r * s + s // 2, c * s + s // 2)`` of each
        cell (the pixel AdelaiDet samples), in ``valid``'s dtype.
    """
    height, width = images.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} is not a multiple of the stride {stride}")
    pooled = F.avg_pool2d(images, kernel_size=stride, stride=stride)
    start = stride // 2
    return rgb_to_lab(pooled), valid[:, start::stride, start::stride]
