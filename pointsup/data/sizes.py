"""Image sizes of the test-time resize, in plain Python (no PyTorch), so that the deployment
runner (``pointsup.deploy.onnx_runner``) can compute them without importing torch."""

from __future__ import annotations


def shortest_edge_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """detectron2's output size: short side to ``short_edge``, long side at most ``max_size``.

    ``scale = short_edge / min(h, w)``; if the long side then exceeds ``max_size`` everything
    is rescaled so it equals ``max_size``; each side is rounded as ``int(x + 0.5)``.
    Returns ``(new_height, new_width)``.
    """
    scale = short_edge / min(height, width)
    if height < width:
        new_height, new_width = float(short_edge), scale * width
    else:
        new_height, new_width = scale * height, float(short_edge)
    if max(new_height, new_width) > max_size:
        rescale = max_size / max(new_height, new_width)
        new_height, new_width = new_height * rescale, new_width * rescale
    return int(new_height + 0.5), int(new_width + 0.5)
