"""Train the authors' implementation (detectron2 PointSup) for a number of iterations: the child
process of ``benchmarks/reference_speed.py``, run by the Python in which detectron2 is installed.

Usage: REFERENCE_PYTHON benchmarks/_reference_train.py --detectron2 CHECKOUT --head HEAD
           --train-json P10_JSON --images FOLDER --iterations N --output FOLDER

Trains PointSup's own config of ``--head`` (``projects/PointSup/configs``) through its own
``train_net.Trainer`` (PointSup's dataset mapper, detectron2's loader and trainer), changed only
where the side-by-side set-up asks: random initial weights, GroupNorm in the ResNet and the FPN,
no frozen stages, batch 2, short side 480 (long side at most 800), the CPU, no loader workers, no
evaluation, the P10 annotations of ``--train-json`` registered as PointSup registers COCO's.
This file imports nothing from pointsup: it runs with the reference's Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: PointSup's config of each head that both libraries train (relative to the detectron2 checkout)
REFERENCE_CONFIGS = {
    "maskrcnn": "projects/PointSup/configs/mask_rcnn_R_50_FPN_3x_point_sup_coco.yaml",
    "implicit_pointrend": "projects/PointSup/configs/implicit_pointrend_R_50_FPN_3x_point_sup_point_aug_coco.yaml",
}
DATASET_NAME = "pointsup_benchmark_points"


def side_by_side_overrides(iterations: int, output: Path) -> list[str]:
    """detectron2 config overrides of the side-by-side set-up (see the module docstring)."""
    return [
        "MODEL.WEIGHTS", "",
        "MODEL.DEVICE", "cpu",
        "MODEL.RESNETS.NORM", "GN",
        "MODEL.FPN.NORM", "GN",
        "MODEL.BACKBONE.FREEZE_AT", "0",
        "INPUT.MIN_SIZE_TRAIN", "(480,)",
        "INPUT.MAX_SIZE_TRAIN", "800",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", str(iterations),
        "DATALOADER.NUM_WORKERS", "0",
        "DATASETS.TRAIN", f"('{DATASET_NAME}',)",
        "DATASETS.TEST", "()",
        "TEST.EVAL_PERIOD", "0",
        "SEED", "0",
        "OUTPUT_DIR", str(output),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectron2", type=Path, required=True, help="the detectron2 checkout (for projects/PointSup)")
    parser.add_argument("--head", choices=sorted(REFERENCE_CONFIGS), required=True)
    parser.add_argument("--train-json", type=Path, required=True, help="COCO JSON with point_coords/point_labels")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(args.detectron2 / "projects" / "PointSup"))
    try:
        from detectron2.config import get_cfg
        from detectron2.data import DatasetCatalog, MetadataCatalog
        from detectron2.data.datasets.coco import load_coco_json
        from detectron2.projects.point_rend import add_pointrend_config
        from point_sup import add_point_sup_config
        from train_net import Trainer
    except ImportError as error:
        print(f"error: --detectron2 {args.detectron2}: cannot import the reference ({error})", file=sys.stderr)
        raise SystemExit(2) from None

    json_file, images = str(args.train_json), str(args.images)
    DatasetCatalog.register(
        DATASET_NAME, lambda: load_coco_json(json_file, images, DATASET_NAME, ["point_coords", "point_labels"])
    )
    MetadataCatalog.get(DATASET_NAME).set(json_file=json_file, image_root=images, evaluator_type="coco")

    cfg = get_cfg()
    add_pointrend_config(cfg)
    add_point_sup_config(cfg)
    cfg.merge_from_file(str(args.detectron2 / REFERENCE_CONFIGS[args.head]))
    cfg.merge_from_list(side_by_side_overrides(args.iterations, args.output))
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()


if __name__ == "__main__":
    main()
