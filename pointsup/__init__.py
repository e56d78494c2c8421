"""pointsup: pointly-supervised instance segmentation.

Point annotations (the P_N form of Cheng, Parkhi & Kirillov, CVPR 2022): every object has a
bounding box and N points inside it, each labelled object (1) or background (0).
"""

__version__ = "0.1.0"
