"""pointsup: pointly-supervised instance segmentation.

Point annotations (the P_N form of Cheng, Parkhi & Kirillov, CVPR 2022): every object has a
bounding box and N points inside it, each labelled object (1) or background (0).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pointsup.engine.predictor import Predictor

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str) -> object:
    """``pointsup.Predictor`` without importing PyTorch for the commands that do not need it."""
    if name == "Predictor":
        from pointsup.engine.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'pointsup' has no attribute {name!r}")
