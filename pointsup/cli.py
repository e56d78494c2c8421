"""The ``pointsup`` command line: one subcommand per job, each a thin layer over the library.

Imports happen inside the handlers so that ``pointsup simulate`` does not pay for loading
PyTorch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pointsup import cli_types
from pointsup.errors import CommandError, PointsupError

if TYPE_CHECKING:
    from pointsup.engine.config import Config

__all__ = ["CommandError", "build_parser", "main"]


def version_output_path(output: Path, version: int, versions: int) -> Path:
    """Where version ``version`` goes: ``output`` itself for a single version, else the
    ``{version}`` placeholder filled in, else ``STEM_v{version}SUFFIX``."""
    if "{version}" in str(output):
        return Path(str(output).replace("{version}", str(version)))
    if versions == 1:
        return output
    return output.with_name(f"{output.stem}_v{version}{output.suffix}")


def _run_simulate(args: argparse.Namespace) -> None:
    from pointsup.points.format import read_coco_json
    from pointsup.points.sampling import BOUNDARY_BIAS_PRESETS, BoundaryBias
    from pointsup.points.simulate import SimulationConfig, simulate_versions
    from pointsup.utils.atomic import write_json_atomic
    from pointsup.utils.paths import refuse_existing_output, refuse_output_over_input

    if args.oversample is not None or args.importance is not None:
        preset = BOUNDARY_BIAS_PRESETS[args.boundary_bias] or BoundaryBias(3, 0.75)
        bias: BoundaryBias | None = BoundaryBias(
            args.oversample or preset.oversample, preset.importance if args.importance is None else args.importance
        )
    else:
        bias = BOUNDARY_BIAS_PRESETS[args.boundary_bias]
    try:
        config = SimulationConfig(
            num_points=args.num_points,
            seed=args.seed,
            compat=args.compat,
            keep_masks=args.keep_masks,
            label_noise=args.label_noise,
            boundary_noise=args.boundary_noise,
            boundary_bias=bias,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for version in range(1, args.versions + 1):
        output = version_output_path(args.output, version, args.versions)
        refuse_output_over_input(output, [args.input], "-o")
        refuse_existing_output(output, "-o", args.force)
    if args.stats_json:
        refuse_output_over_input(args.stats_json, [args.input], "--stats-json")
        refuse_existing_output(args.stats_json, "--stats-json", args.force)
    coco = read_coco_json(args.input)
    _refuse_simulation_beyond_memory(len(coco.get("annotations", [])), args.num_points)
    all_statistics = {}
    for result in simulate_versions(
        coco, config, args.versions, str(args.input), show_progress=not args.quiet, consume_input=True
    ):
        path = version_output_path(args.output, result.version, args.versions)
        write_json_atomic(path, result.coco)
        all_statistics[str(path)] = result.statistics.to_dict()
        if not args.quiet:
            print(f"wrote {path} (version {result.version})")
            print(result.statistics.format_table())
    if args.stats_json:
        write_json_atomic(args.stats_json, all_statistics, indent=2)


def _refuse_simulation_beyond_memory(num_annotations: int, num_points: int) -> None:
    from pointsup.points.simulate import estimated_peak_bytes
    from pointsup.utils.memory import available_memory_bytes, format_bytes

    needed = estimated_peak_bytes(num_annotations, num_points)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise CommandError(
            f"--num-points {num_points} on {num_annotations} objects needs about {format_bytes(needed)} of memory, "
            f"{format_bytes(available)} is available: give fewer points"
        )


def _run_stats(args: argparse.Namespace) -> None:
    import json

    from pointsup.points.agreement import dataset_statistics
    from pointsup.points.format import load_point_dataset

    dataset = load_point_dataset(args.annotations)
    masks = load_point_dataset(args.masks, require_points=False) if args.masks else None
    statistics = dataset_statistics(dataset, masks)
    print(json.dumps(statistics.to_dict(), indent=2) if args.json else statistics.format_table())


def _run_synthetic(args: argparse.Namespace) -> None:
    from pointsup.data.synthetic import generate_synthetic_dataset

    try:
        dataset = generate_synthetic_dataset(
            args.output_dir,
            num_images=args.images,
            seed=args.seed,
            image_size=args.image_size,
            val_fraction=args.val_fraction,
            show_progress=not args.quiet,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {dataset.num_images} images with {dataset.num_instances} instances to {dataset.root}")
    print(f"  train: {dataset.train_json}\n  val:   {dataset.val_json}")


def _run_show(args: argparse.Namespace) -> None:
    from pointsup.visualize import show_annotations

    try:
        path = show_annotations(
            args.annotations, args.images, args.output, image_ids=args.image_id, max_images=args.max_images, output_option="-o"
        )
    except PointsupError:
        raise
    except ValueError as exc:  # an unknown image id or output suffix
        raise CommandError(str(exc)) from None
    print(f"wrote {path}")


def _run_demo(args: argparse.Namespace) -> None:
    from pointsup.demo import run_demo

    run_demo(args.output, num_images=args.images, seed=args.seed, iterations=args.iterations)


def _overrides_and_config(args: argparse.Namespace):
    from pointsup.engine.config import load_config

    return load_config(args.config, args.overrides)


def _prepare_train_output(args: argparse.Namespace, config: Config, output: Path) -> None:
    """Refuse an output folder that holds an input file where the run writes, or that holds a
    finished or interrupted run without ``--resume``; with ``--restart`` move that run aside."""
    from pointsup.engine.run_folder import move_run_aside, refuse_inputs_in_run, run_markers, training_inputs

    option = "--output" if args.output else "output_dir"
    own_config = args.resume or args.restart  # config.yaml is the run's own (resumed) or is moved aside first
    refuse_inputs_in_run(output, [*training_inputs(config), None if own_config else args.config], option)
    markers = run_markers(output)
    if not markers or args.resume:
        return
    if not args.restart:
        raise CommandError(
            f"{option} {output} already holds a training run ({', '.join(markers)}): give --resume to continue it, "
            "or --restart to move it aside and start over"
        )
    print(f"moved the previous run in {output} to {move_run_aside(output)}")


def _run_train(args: argparse.Namespace) -> None:
    from pointsup.engine.distributed import launch, launched_rank
    from pointsup.engine.trainer import train_main

    config = _overrides_and_config(args)
    output = str(args.output or config.output_dir)
    if launched_rank() == 0:  # under torchrun every process runs this: rank 0 alone checks and moves
        _prepare_train_output(args, config, Path(output))
    if args.num_gpus > 1:
        launch(train_main, args.num_gpus, (config, output, args.resume))
    else:
        train_main(config, output, args.resume)


def _run_eval(args: argparse.Namespace) -> None:
    from pointsup.engine.evaluate_main import evaluate_checkpoint, evaluation_output_dir
    from pointsup.evaluation.coco_evaluator import METRICS_FILE, RESULTS_FILE, format_ap_table, format_per_category_table
    from pointsup.utils.paths import refuse_output_over_input

    config = _overrides_and_config(args)
    output = evaluation_output_dir(args.weights, args.output)
    for name in (RESULTS_FILE, METRICS_FILE):
        refuse_output_over_input(
            output / name,
            [args.config, args.weights, config.data.val_json],
            "--output" if args.output else "the default evaluation folder",
            folder=output,
        )
    results = evaluate_checkpoint(config, args.weights, args.output)
    if results:
        print(format_ap_table(results, title=f"{args.weights}"))
        print(format_per_category_table(results))


def _run_predict(args: argparse.Namespace) -> None:
    from pointsup.engine.predict_main import expand_image_inputs, output_files, predict_to_folder
    from pointsup.utils.paths import refuse_output_over_input

    images = expand_image_inputs(args.images)
    outputs = {path.name: path for path in output_files(images, args.output, args.overlays)}
    for path in [*images, args.weights, args.config]:  # only a file named like an output can be overwritten
        if path is not None and Path(path).name in outputs:
            refuse_output_over_input(outputs[Path(path).name], [path], "-o", folder=args.output)
    predict_to_folder(
        args.weights,
        images,
        args.output,
        args.score_threshold,
        args.device,
        args.config,
        batch_size=args.batch_size,
        num_workers=args.workers,
        overlays=args.overlays,
    )


def _run_export(args: argparse.Namespace) -> None:
    from pointsup.deploy.export import export_checkpoint
    from pointsup.utils.paths import refuse_output_over_input

    refuse_output_over_input(args.output, [args.weights], "-o")
    path = export_checkpoint(args.weights, args.output, args.format, args.opset)
    print(f"wrote {path}")


def _run_pseudo_label(args: argparse.Namespace) -> None:
    from pointsup.engine.config import load_config
    from pointsup.engine.predictor import load_trained_model
    from pointsup.engine.pseudo_label import pseudo_label
    from pointsup.utils.paths import refuse_output_over_input

    if args.overrides and not args.config:
        raise CommandError("KEY=VALUE overrides apply to --config: give the config file as well")
    refuse_output_over_input(args.output, [args.dataset, args.weights, args.reference, args.config], "-o")
    config = load_config(args.config, args.overrides) if args.config else None
    trained = load_trained_model(args.weights, args.device, config)
    images = args.images or trained.config.data.train_images
    if not images:
        raise CommandError("give --images (the folder the dataset's file_name entries are relative to)")
    if not Path(images).is_dir():
        raise CommandError(f"images folder not found: {images}")
    report = pseudo_label(trained, args.dataset, images, args.output, args.reference, args.weights)
    print(report.format())
    print(f"wrote {args.output}")


def _run_selftrain(args: argparse.Namespace) -> None:
    from pointsup.engine.run_folder import refuse_inputs_in_run, training_inputs
    from pointsup.engine.selftrain import SelfTrainingPaths, run_selftraining, selftrain_configs
    from pointsup.utils.paths import refuse_output_over_input

    paths = SelfTrainingPaths(args.output)
    points_config, _ = selftrain_configs(args.config, args.overrides, paths.pseudo_json)
    inputs = [args.config, *training_inputs(points_config), args.reference]
    refuse_output_over_input(paths.pseudo_json, inputs, "--output", folder=args.output)
    for run_dir in (paths.points_dir, paths.masks_dir):
        refuse_inputs_in_run(run_dir, inputs, "--output", named=args.output)
    result = run_selftraining(args.config, args.output, args.overrides, args.num_gpus, args.device, args.reference)
    print(result.format())


def _run_configs(args: argparse.Namespace) -> None:
    from pointsup.engine.config import ConfigError, config_yaml, load_config
    from pointsup.engine.shipped_configs import CONFIGS_DIR, shipped_config, shipped_configs

    if args.name is None:
        for name, config_path in shipped_configs().items():
            print(f"{name:<48} {config_path.relative_to(CONFIGS_DIR).as_posix()}")
        return
    path = shipped_config(args.name)
    if path is None:
        raise ConfigError(f"no shipped config is called {args.name!r} (`pointsup configs` lists them)")
    config = load_config(path, args.overrides)  # validated as training would read it
    print(f"# {path}")
    print(config_yaml(config), end="")


def _run_recipe(args: argparse.Namespace) -> None:
    from pointsup.engine.recipe import DEFAULT_BUDGET_MINUTES, dataset_statistics, pixel_cost_model, propose_recipe
    from pointsup.engine.recipe_stats import missing_image_files
    from pointsup.engine.recipe_yaml import BASE_RECIPES, base_recipe_path, format_report, load_recipe_text, recipe_yaml
    from pointsup.points.format import PointFormatError
    from pointsup.utils.atomic import write_bytes_atomic
    from pointsup.utils.paths import refuse_existing_output, refuse_output_over_input

    if args.base is not None:  # the model is the base recipe's: flags may only agree with it
        from pointsup.engine.config import load_config
        from pointsup.engine.shipped_configs import resolve_config_path

        args.base = resolve_config_path(args.base)

        base_model = load_config(args.base).model
        for flag, given, actual in (
            ("--architecture", args.architecture, base_model.architecture),
            ("--mask-head", args.mask_head, base_model.mask_head.name),
        ):
            if given is not None and given != actual:
                raise CommandError(f"{flag} {given} contradicts --base {args.base}, whose model is {actual}")
        args.architecture, args.mask_head = base_model.architecture, base_model.mask_head.name
    args.architecture = args.architecture or "mask_rcnn"
    if args.architecture == "condinst" and args.mask_head not in (None, "maskrcnn"):
        raise CommandError("--mask-head applies to --architecture mask_rcnn (CondInst has its own dynamic mask head)")
    if args.output is not None:
        refuse_output_over_input(args.output, [args.dataset, args.base], "-o")
    if args.output is not None and args.output.is_dir():
        raise CommandError(f"{args.output} is a folder: give the YAML file to write")
    if args.output is not None:
        refuse_existing_output(args.output, "-o", args.force)
    if not args.images.is_dir():
        raise CommandError(f"images folder not found: {args.images}")
    if args.base is None and (args.architecture, args.mask_head or "maskrcnn") not in BASE_RECIPES:
        raise CommandError(f"no shipped CPU recipe has the {args.mask_head} mask head: give one to start from with --base")
    base = args.base or base_recipe_path(args.architecture, args.mask_head or "maskrcnn", args.backbone)
    if not base.is_file():
        raise CommandError(f"base recipe not found: {base} (give --base FILE)")
    try:
        stats = dataset_statistics(args.dataset)
    except PointFormatError as exc:
        raise CommandError(exc.one_line()) from None
    missing = missing_image_files(stats, args.images)
    if len(missing) == stats.num_images:
        raise CommandError(f"none of the {stats.num_images} images of {args.dataset} is under {args.images} (e.g. {missing[0]})")
    cost = pixel_cost_model(args.seconds_per_iteration) if args.seconds_per_iteration else None
    recipe = propose_recipe(
        stats,
        args.budget_minutes or DEFAULT_BUDGET_MINUTES,
        architecture=args.architecture,
        mask_head=args.mask_head or "maskrcnn",
        backbone=args.backbone,
        seconds_per_iteration=cost,
    )
    text = recipe_yaml(recipe, base, args.dataset, args.images, stats)
    load_recipe_text(text)  # the proposal must load as `pointsup train` will load it
    print(format_report(stats, recipe))
    if missing:
        print(f"warning: {len(missing)} of {stats.num_images} images are not under {args.images} (e.g. {missing[0]})")
    if args.output is None:
        print()
        print(text, end="")
    else:
        write_bytes_atomic(args.output, text.encode("utf-8"))
        print(f"wrote {args.output}; train with: pointsup train {args.output}")


def build_parser() -> argparse.ArgumentParser:
    from pointsup.modeling.mask_heads import MASK_HEADS  # the registry alone: no PyTorch

    parser = argparse.ArgumentParser(prog="pointsup", description="Pointly-supervised instance segmentation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('pointsup').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser("simulate", help="add simulated P_N point annotations to a COCO file with masks")
    sim.add_argument("input", type=Path, help="COCO instances JSON with masks (polygons or RLE)")
    sim.add_argument(
        "-o", "--output", type=Path, required=True, help="output JSON ({version} is replaced; with several versions _vK is added)"
    )
    sim.add_argument("--num-points", type=cli_types.positive_int, default=10, help="points per instance (default 10)")
    sim.add_argument("--seed", type=int, default=12345, help="random seed (default 12345, the reference's)")
    sim.add_argument("--versions", type=cli_types.positive_int, default=1, help="write K versions with different draws")
    sim.add_argument("--keep-masks", action="store_true", help="keep the segmentation field in the output")
    sim.add_argument(
        "--compat",
        choices=["pointsup", "detectron2"],
        default="pointsup",
        help="'detectron2' reproduces the reference's files exactly",
    )
    sim.add_argument("--label-noise", type=cli_types.fraction, default=0.0, help="flip this fraction of all labels at random")
    sim.add_argument(
        "--boundary-noise",
        type=cli_types.fraction,
        default=0.0,
        help="flip this fraction of labels: the points closest to the mask boundary",
    )
    sim.add_argument(
        "--boundary-bias", choices=["none", "mild", "heavy"], default="none", help="sample points biased toward the mask boundary"
    )
    sim.add_argument("--oversample", type=cli_types.positive_int, default=None, help="custom boundary bias: candidates per point")
    sim.add_argument(
        "--importance",
        type=cli_types.fraction,
        default=None,
        help="custom boundary bias: share of points taken near the boundary",
    )
    sim.add_argument("--stats-json", type=Path, default=None, help="also write the statistics as JSON")
    sim.add_argument("--force", action="store_true", help="overwrite existing output files")
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress bar or report")
    sim.set_defaults(handler=_run_simulate)

    stats = commands.add_parser("stats", help="statistics of a point annotation file")
    stats.add_argument("annotations", type=Path, help="COCO JSON with point_coords/point_labels")
    stats.add_argument(
        "--masks", type=Path, default=None, help="COCO JSON with the true masks (same annotation ids), for agreement"
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=_run_stats)

    syn = commands.add_parser("synthetic", help="write a synthetic COCO instance segmentation dataset")
    syn.add_argument("output_dir", type=Path)
    syn.add_argument("--images", type=cli_types.positive_int, default=64, help="number of images (default 64)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--image-size", type=int, default=512, help="image side in pixels (default 512)")
    syn.add_argument("--val-fraction", type=float, default=0.25, help="share of images in the validation split")
    syn.add_argument("-q", "--quiet", action="store_true")
    syn.set_defaults(handler=_run_synthetic)

    show = commands.add_parser("show", help="draw boxes, masks and labelled points into a picture (PNG, JPEG...)")
    show.add_argument("annotations", type=Path)
    show.add_argument("--images", type=Path, required=True, help="folder the file_name entries are relative to")
    show.add_argument(
        "-o", "--output", type=Path, required=True, help="output picture; its suffix names the format (.png, .jpg, .webp...)"
    )
    show.add_argument(
        "--image-id", type=int, action="append", default=None, help="image id to draw (repeatable; default: the first images)"
    )
    show.add_argument(
        "--max-images", type=cli_types.positive_int, default=4, help="images in the grid when no --image-id is given"
    )
    show.set_defaults(handler=_run_show)

    demo = commands.add_parser("demo", help="the end-to-end demo on synthetic data")
    demo.add_argument("--output", type=Path, default=Path("demo_output"))
    demo.add_argument("--images", type=cli_types.positive_int, default=96, help="synthetic images (default 96)")
    demo.add_argument(
        "--iterations", type=cli_types.positive_int, default=None, help="training iterations (default: the CPU recipe's)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_run_demo)

    train = commands.add_parser("train", help="train a model (torchrun-compatible; --num-gpus N spawns N local processes)")
    train.add_argument(
        "config", type=Path, help="YAML config: a file, or a shipped config's name (`pointsup configs` lists them)"
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. solver.base_lr=0.01")
    train.add_argument("--output", type=Path, default=None, help="output folder (default: the config's output_dir)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    start.add_argument(
        "--restart",
        action="store_true",
        help="move a previous run in the output folder into OUTPUT/previous-<time>/ and start over",
    )
    train.add_argument("--num-gpus", type=cli_types.positive_int, default=1, help="local processes to launch (one per GPU)")
    train.set_defaults(handler=_run_train)

    evaluate = commands.add_parser("eval", help="COCO box and mask AP of a checkpoint on the config's validation set")
    evaluate.add_argument("config", type=Path)
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    evaluate.add_argument("--weights", type=Path, required=True, help="checkpoint to evaluate")
    evaluate.add_argument("--output", type=Path, default=None, help="folder for the results and metrics JSON")
    evaluate.set_defaults(handler=_run_eval)

    predict = commands.add_parser(
        "predict", help="predict instances in images: COCO results JSON (resumable) and optional PNG overlays"
    )
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE_DIR_OR_GLOB", help="image files, folders of images, or glob patterns ('x/**/*.jpg')"
    )
    predict.add_argument("--weights", type=Path, required=True, help="checkpoint written by `pointsup train`")
    predict.add_argument(
        "-o", "--output", type=Path, default=Path("predictions"), help="output folder (an interrupted run continues in it)"
    )
    predict.add_argument("--score-threshold", type=cli_types.fraction, default=0.5, help="drop detections below this score")
    predict.add_argument("--config", type=Path, default=None, help="use this config instead of the checkpoint's")
    predict.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    predict.add_argument("--batch-size", type=cli_types.positive_int, default=1, help="images per forward pass (default 1)")
    predict.add_argument(
        "--workers",
        type=cli_types.non_negative_int,
        default=2,
        help="processes decoding images while the model runs (default 2; 0 decodes in the main process)",
    )
    predict.add_argument(
        "--overlays", action=argparse.BooleanOptionalAction, default=True, help="write a PNG overlay per image (default: yes)"
    )
    predict.set_defaults(handler=_run_predict)

    export = commands.add_parser(
        "export", help="export a checkpoint for deployment: an ONNX graph that onnxruntime runs without pointsup, or TorchScript"
    )
    export.add_argument("--weights", type=Path, required=True, help="checkpoint written by `pointsup train`")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default onnx")
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write, e.g. model.onnx or model.pt")
    export.add_argument(
        "--opset", type=cli_types.positive_int, default=17, help="ONNX opset (default 17, pointsup.deploy.export.OPSET)"
    )
    export.set_defaults(handler=_run_export)

    pseudo = commands.add_parser(
        "pseudo-label", help="pseudo masks for every training instance from a point-trained model and the GT boxes"
    )
    pseudo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of --config (e.g. data.min_size_test=800)")
    pseudo.add_argument("--weights", type=Path, required=True, help="checkpoint of a point-supervised model")
    pseudo.add_argument("--dataset", type=Path, required=True, help="COCO JSON with the boxes (and points) to pseudo-label")
    pseudo.add_argument("-o", "--output", type=Path, required=True, help="COCO JSON to write, with a mask on every instance")
    pseudo.add_argument("--config", type=Path, default=None, help="config to use instead of the checkpoint's")
    pseudo.add_argument("--images", type=Path, default=None, help="image folder (default: the config's data.train_images)")
    pseudo.add_argument(
        "--reference", type=Path, default=None, help="COCO JSON with the true masks, to report the pseudo masks' IoU"
    )
    pseudo.add_argument("--device", default="auto")
    pseudo.set_defaults(handler=_run_pseudo_label)

    selftrain = commands.add_parser(
        "selftrain", help="train on points, pseudo-label the training set, retrain on the pseudo masks"
    )
    selftrain.add_argument("config", type=Path, help="a point-supervised recipe")
    selftrain.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for both training stages")
    selftrain.add_argument("--output", type=Path, required=True, help="run folder (an interrupted run continues in it)")
    selftrain.add_argument("--num-gpus", type=cli_types.positive_int, default=1, help="local processes per training stage")
    selftrain.add_argument(
        "--reference", type=Path, default=None, help="COCO JSON with the true training masks, to report the pseudo masks' IoU"
    )
    selftrain.add_argument("--device", default="auto", help="device for pseudo-labelling")
    selftrain.set_defaults(handler=_run_selftrain)

    recipe = commands.add_parser(
        "recipe", help="propose a CPU training recipe (input size, anchors, schedule) fitted to a COCO dataset"
    )
    recipe.add_argument("dataset", type=Path, help="COCO instances JSON to train on (points optional)")
    recipe.add_argument("--images", type=Path, required=True, help="folder the file_name entries are relative to")
    recipe.add_argument(
        "--budget-minutes",
        type=cli_types.positive_float,
        default=None,
        help="training time to fit the schedule into (default 30, pointsup.engine.recipe.DEFAULT_BUDGET_MINUTES)",
    )
    recipe.add_argument("--architecture", choices=["mask_rcnn", "condinst"], default=None, help="default mask_rcnn, or --base's")
    recipe.add_argument(
        "--mask-head",
        choices=list(MASK_HEADS),
        default=None,
        help="Mask R-CNN's mask head (default maskrcnn)",
    )
    recipe.add_argument("--backbone", choices=["efficientnet_lite0"], default="efficientnet_lite0")
    recipe.add_argument(
        "--seconds-per-iteration",
        type=cli_types.positive_float,
        default=None,
        help="measured seconds per training iteration at batch 4 and 320x480 input (default: the built-in estimate)",
    )
    recipe.add_argument(
        "--base", type=Path, default=None, help="recipe to inherit from (default: the shipped CPU recipe of the model)"
    )
    recipe.add_argument("-o", "--output", type=Path, default=None, help="YAML file to write (default: print it)")
    recipe.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    recipe.set_defaults(handler=_run_recipe)

    configs = commands.add_parser(
        "configs", help="list the shipped configs, or print one resolved (with its bases and overrides)"
    )
    configs.add_argument(
        "name", nargs="?", default=None, metavar="NAME", help="a shipped config's name, e.g. mask_rcnn_R_50_FPN_3x_points"
    )
    configs.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, as for train")
    configs.set_defaults(handler=_run_configs)

    from pointsup.annotator.cli import add_annotate_parser

    add_annotate_parser(commands)
    from pointsup.analysis.cli import add_cost_parser
    from pointsup.formats.cli import add_convert_parser

    add_cost_parser(commands)
    add_convert_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pointsup`` console script. Returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except PointsupError as exc:
        print(f"pointsup {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`pointsup configs | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # what the system refused (permissions, a folder given as a file...): name the file
        print(f"pointsup {args.command}: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 2
    return 0


def _describe_os_error(exc: OSError) -> str:
    from pointsup.utils.atomic import describe_os_error

    reason = describe_os_error(exc)
    return f"{exc.filename}: {reason}" if exc.filename is not None else reason


if __name__ == "__main__":
    sys.exit(main())
