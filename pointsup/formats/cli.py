"""``pointsup convert``: import other annotation formats into COCO, export P_N points to others."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pointsup.errors import CommandError
from pointsup.formats.constants import EXPORT_FORMATS, IMPORT_FORMATS


def run_convert(args: argparse.Namespace) -> None:
    """The handler of ``pointsup convert``."""
    from pointsup.formats.registry import export_points, import_annotations
    from pointsup.points.format import load_point_dataset
    from pointsup.utils.atomic import write_bytes_atomic, write_json_atomic
    from pointsup.utils.paths import refuse_existing_output, refuse_output_over_input

    if args.names is not None and args.from_format != "yolo":
        raise CommandError("--names applies to --from yolo only")
    if args.images is not None and not args.images.is_dir():
        raise CommandError(f"--images {args.images} is not a folder")
    refuse_output_over_input(args.output, [args.input, args.names], "-o")
    if args.output.is_dir():
        raise CommandError(f"-o {args.output} is a folder: give the file to write")
    refuse_existing_output(args.output, "-o", args.force)
    if args.from_format is not None:
        result = import_annotations(args.from_format, args.input, args.images, names=args.names)
        assert result.coco is not None
        write_json_atomic(args.output, result.coco)
        coco: dict[str, Any] = result.coco
        points = sum(len(a.get("point_labels", [])) for a in coco["annotations"])
        masks = sum("segmentation" in a for a in coco["annotations"])
        summary = f"{len(coco['images'])} images, {len(coco['annotations'])} objects ({masks} with polygons, {points} points)"
    else:
        dataset = load_point_dataset(args.input)
        result = export_points(args.to_format, dataset)
        assert result.payload is not None
        write_bytes_atomic(args.output, result.payload)
        summary = f"{len(dataset.images)} images, {len(dataset.instances)} objects"
    print(f"wrote {args.output}: {summary}")
    for kind, count in sorted(result.skipped.items()):
        print(f"note: {count} shape(s) of kind {kind!r} not converted")


def add_convert_parser(commands: Any) -> None:
    """Register ``pointsup convert`` on the subcommand parsers ``commands``."""
    convert = commands.add_parser(
        "convert",
        help="import YOLO, Pascal VOC, CVAT or Label Studio annotations into COCO, or export P_N points to CVAT or Label Studio",
        description="Formats and their coordinate conventions: docs/formats.md.",
    )
    convert.add_argument(
        "input", type=Path, help="--from: the file or folder to import (YOLO, VOC: folder); --to: a P_N COCO file"
    )
    convert.add_argument("-o", "--output", type=Path, required=True, help="file to write (COCO JSON for --from)")
    direction = convert.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="from_format", choices=IMPORT_FORMATS, help="import this format into COCO")
    direction.add_argument("--to", dest="to_format", choices=EXPORT_FORMATS, help="export a P_N file to this format")
    convert.add_argument(
        "--images",
        type=Path,
        default=None,
        help="image folder (YOLO: required, for the sizes; others: check each image is there)",
    )
    convert.add_argument(
        "--names", type=Path, default=None, help="YOLO class names (classes.txt or data.yaml); default: found beside the labels"
    )
    convert.add_argument("--force", action="store_true", help="overwrite an existing -o file")
    convert.set_defaults(handler=run_convert)
