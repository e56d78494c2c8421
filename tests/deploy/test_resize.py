"""The runner's NumPy resize against the data pipeline's PyTorch resize, pixel for pixel."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pointsup.data.transforms import resize_image, shortest_edge_size
from pointsup.deploy.resize import resize_like_torch

SIZES = [
    (128, 128, 200, 260),  # up both ways
    (480, 640, 800, 1067),  # the COCO test size
    (1000, 700, 320, 224),  # down: several taps per output pixel
    (333, 500, 128, 192),
    (64, 64, 64, 100),  # width only
    (97, 131, 60, 131),  # height only
    (50, 50, 800, 800),  # 16x up
    (3, 2000, 1, 800),  # extreme aspect
]


@pytest.mark.parametrize("height, width, new_height, new_width", SIZES)
def test_resize_matches_the_pipelines_pytorch_resize(height, width, new_height, new_width):
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = 255  # flat and saturated regions as well as noise
    expected = resize_image(torch.from_numpy(image).permute(2, 0, 1), new_height, new_width).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(resize_like_torch(image, new_height, new_width), expected)


def test_resize_at_the_test_sizes_of_real_shapes():
    rng = np.random.default_rng(1)
    for height, width in [(427, 640), (640, 480), (375, 500)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for short_edge, max_size in [(800, 1333), (320, 533)]:
            size = shortest_edge_size(height, width, short_edge, max_size)
            expected = resize_image(torch.from_numpy(image).permute(2, 0, 1), *size).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(resize_like_torch(image, *size), expected)


def test_the_resize_imports_no_pytorch():
    script = "import sys, pointsup.deploy.resize; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
