"""Argument parsing for ``pointsup annotate`` (kept light: no server imports at parse time).

* ``pointsup annotate serve DATASET.json --images DIR [--gold SHARE]``: start the labelling
  server (with gold questions when asked);
* ``pointsup annotate serve --images DIR --categories a,b,c [--stage both|boxes|points]``: start
  from a folder of photos: boxes are drawn first (:mod:`~pointsup.annotator.box_session`);
* ``... serve ... --weights CHECKPOINT [--skip-confident P]``: with the model's suggestion at
  each point (:mod:`~pointsup.annotator.assist`);
* ``pointsup annotate export --db FILE -o OUT.json``: write the answers as a point file;
* ``pointsup annotate progress --db FILE``: print the progress report;
* ``pointsup annotate release --db FILE [--annotator NAME]``: give the unfinished objects an
  annotator (or everyone) holds back to the pool at once.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
from pathlib import Path

from pointsup import cli_types
from pointsup.annotator.store import DEFAULT_CLAIM_TIMEOUT_S, AnnotationStore
from pointsup.errors import CommandError, PointsupError

#: a token must be safe in a URL and a cookie
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,200}")


def default_db_path(dataset: Path) -> Path:
    """``DIR/NAME.json`` -> ``DIR/NAME.points.db``."""
    return dataset.with_name(f"{dataset.stem}.points.db")


def _run_serve(args: argparse.Namespace) -> None:
    from pointsup.annotator.serve_setup import assist_model, open_server, start_assist_for_serve
    from pointsup.annotator.server import is_loopback, run_until_stopped
    from pointsup.annotator.store import open_session
    from pointsup.utils.paths import refuse_output_over_input

    if not args.images.is_dir():
        raise CommandError(f"images folder not found: {args.images}")
    token = args.token
    if token == "auto" or (token is None and not is_loopback(args.host)):
        token = secrets.token_urlsafe(18)
    elif token is not None and not _TOKEN_PATTERN.fullmatch(token):
        raise CommandError("--token must be 8 to 200 characters from A-Z a-z 0-9 . _ ~ -")
    if args.dataset is None:  # a folder of photos: the box stage first
        from pointsup.annotator.box_session import serve_folder

        serve_folder(args, token)
        return
    if args.categories is not None:
        raise CommandError("--categories starts a session from a folder of photos: give it without DATASET.json")
    if args.stage == "boxes":
        raise CommandError(
            f"--stage boxes: {args.dataset} has its boxes already (--stage is for a session from a folder of photos)"
        )
    db_path = args.db or default_db_path(args.dataset)
    refuse_output_over_input(db_path, [args.dataset], "--db")
    model = assist_model(args, args.dataset)  # before anything is written
    try:
        store, created = open_session(
            db_path,
            args.dataset,
            num_points=args.points,
            seed=args.seed,
            overlap=args.overlap,
            claim_timeout_s=60.0 * args.claim_timeout,
            images_dir=args.images,
            use_points=args.use_points,
        )
    except PointsupError:  # StoreError, PointFormatError: shown as they are
        raise
    except ValueError as exc:  # invalid settings
        raise CommandError(str(exc)) from None
    if args.gold is not None:
        from pointsup.annotator.gold import GoldError, GoldPlan

        try:
            store.gold = GoldPlan.for_store(store, args.gold, args.training)
        except GoldError as exc:
            store.close()
            raise CommandError(f"{args.dataset}: {exc}") from None
    assisting = start_assist_for_serve(args, store, model, str(args.dataset))
    server = open_server(args, store, token)
    settings = store.settings
    if created and settings.given_points_ignored:
        print(
            f"warning: {settings.given_points_ignored} annotations of {args.dataset} carry point_coords; they are ignored "
            "and new points are drawn (--use-points labels exactly those points)"
        )
    if settings.has_masks:
        unmasked = [o.annotation_id for o in store.objects() if o.mask_values is None]
        if unmasked:
            print(
                f"warning: {len(unmasked)} of {settings.num_objects} objects have a missing or malformed mask (e.g. annotation id "
                f"{unmasked[0]}): they are labelled as usual but left out of the agreement with the masks"
            )
    source = "the file's own points" if settings.points_given else f"seed {settings.seed}"
    print(
        f"{'created' if created else 'resumed'} session {db_path}: {settings.num_objects} objects, "
        f"{settings.num_points} points each ({source}, overlap {settings.overlap})"
    )
    if assisting:
        print(assisting)
    print(f"progress page: {server.url('/progress')}")
    print(f"labelling page: {server.url()}", flush=True)
    run_until_stopped(server)


def _open_store(path: Path) -> AnnotationStore:
    """The session database at ``path``; a one-line CommandError when it cannot be opened."""
    from pointsup.annotator.store import AnnotationStore, StoreError

    try:
        return AnnotationStore.open(path)
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def _run_export(args: argparse.Namespace) -> None:
    from pointsup.annotator.export import export_points
    from pointsup.utils.paths import refuse_output_over_input

    if args.boxes and (args.partial or args.annotator is not None):
        raise CommandError(
            f"--boxes writes the boxes of every finished photo, whoever drew them: {'--partial' if args.partial else '--annotator'} "
            "applies to the point file (leave out --boxes)"
        )
    refuse_output_over_input(args.output, [args.db], "-o")
    store = _open_store(args.db)
    try:
        # the session's source file, as recorded when it was created (relative to that working folder)
        refuse_output_over_input(args.output, [store.settings.dataset_path], "-o")
        if args.boxes:
            from pointsup.annotator.box_store import export_boxes

            print(export_boxes(store, args.output))
            return
        summary = export_points(store, args.output, partial=args.partial, annotator=args.annotator)
    except PointsupError:  # PointFormatError (a ValueError too): shown as its own one line
        raise
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    print(summary.describe())


def _run_progress(args: argparse.Namespace) -> None:
    from pointsup.annotator.progress import compute_progress

    store = _open_store(args.db)
    try:
        report = compute_progress(store)
    finally:
        store.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())


def _run_release(args: argparse.Namespace) -> None:
    store = _open_store(args.db)
    try:
        released = store.release(args.annotator)
        if store.settings.from_folder:
            from pointsup.annotator.box_store import BoxStage

            images = BoxStage(store).release(args.annotator)
            if images:
                holders = sorted({store.display_name(key) for key, _ in images})
                print(f"released {len(images)} photos held by {', '.join(holders)} (their boxes stay)")
                if not released.objects:
                    return
        names = store.display_names()
    finally:
        store.close()
    if not released.objects:
        who = f"{args.annotator!r} holds" if args.annotator else "nobody holds"
        print(f"nothing to release: {who} an unfinished object")
        return
    holders = sorted({names.get(key, key) for key, _, _ in released.objects})
    print(
        f"released {len(released.objects)} objects held by {', '.join(holders)} ({released.partly_answered} partly answered: "
        "their answers stay and the next annotator continues them)"
    )


def add_annotate_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``annotate`` subcommand group on the top-level parser."""
    annotate = commands.add_parser("annotate", help="label points in a browser: serve the labelling tool, export, progress")
    actions = annotate.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="start the labelling web server and print its URL")
    serve.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        default=None,
        metavar="DATASET.json",
        help="COCO JSON with boxes and categories (masks optional: used for agreement); without it, a folder of photos "
        "whose boxes are drawn first (--categories)",
    )
    serve.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder the file_name entries are relative to")
    serve.add_argument(
        "--categories",
        default=None,
        metavar="NAMES|@FILE",
        help="without DATASET.json: the categories of the boxes to draw on the photos of --images, as a,b,c (always "
        "names) or @FILE, a text file with one name per line (keys 1-9 pick them)",
    )
    serve.add_argument(
        "--stage",
        choices=("both", "boxes", "points"),
        default=None,
        help="a session from a folder: ask for boxes and, once an image is finished, points on its objects (both, "
        "the default), boxes only, or points only. With DATASET.json the boxes are given: only points are asked "
        "(both and points mean that; boxes is refused)",
    )
    serve.add_argument(
        "--points",
        type=cli_types.positive_int,
        default=None,
        metavar="N",
        help="points per object (default 10; fixed when the session is created)",
    )
    serve.add_argument(
        "--seed",
        type=cli_types.non_negative_int,
        default=None,
        metavar="S",
        help="sampling seed, as in `pointsup simulate` (default 12345)",
    )
    serve.add_argument(
        "--overlap",
        type=cli_types.positive_int,
        default=None,
        metavar="K",
        help="annotators per object, for agreement studies (default 1: no object is handed out twice)",
    )
    serve.add_argument(
        "--claim-timeout",
        type=cli_types.positive_float,
        default=DEFAULT_CLAIM_TIMEOUT_S / 60.0,
        metavar="MIN",
        help="minutes without an answer after which an annotator's unfinished objects go back to the pool, "
        "their answers kept (default %(default)g)",
    )
    serve.add_argument(
        "--use-points",
        action="store_true",
        help="label the point_coords the file already carries instead of drawing new points (same number on every object)",
    )
    serve.add_argument(
        "--gold",
        type=cli_types.positive_float,
        default=None,
        metavar="SHARE",
        help="check annotators with gold questions (points whose mask value is known; needs masks): a training round "
        "with feedback, then SHARE of the points (e.g. 0.05)",
    )
    serve.add_argument(
        "--training",
        type=cli_types.non_negative_int,
        default=6,
        metavar="N",
        help="gold questions in the training round, with --gold (default %(default)s)",
    )
    serve.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="FILE",
        help="session database (default: DATASET's name with .points.db; from a folder DIR: DIR.points.db beside it)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="address to bind (default 127.0.0.1; others get an access token)"
    )
    serve.add_argument("--port", type=cli_types.port, default=8765, metavar="P", help="port (default 8765; 0 picks a free one)")
    serve.add_argument(
        "--token", default=None, metavar="TOKEN", help="access token required on every request ('auto' generates one)"
    )
    serve.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="model-assisted labelling: show this model's answer (its probability, given the box and class) with each point; "
        "one key accepts it",
    )
    serve.add_argument(
        "--skip-confident",
        type=cli_types.positive_float,
        default=None,
        metavar="P",
        help="with --weights: do not ask points the model is at least P sure of (e.g. 0.95): their label is the model's, "
        "marked in the export (default: every point is asked)",
    )
    serve.add_argument("--device", default="auto", help="device of the --weights model: auto, cpu, cuda, cuda:1 (default auto)")
    serve.add_argument("-q", "--quiet", action="store_true", help="do not log refused requests")
    serve.set_defaults(handler=_run_serve)

    export = actions.add_parser("export", help="write the answers as COCO JSON with point_coords/point_labels")
    export.add_argument("--db", type=Path, required=True, metavar="FILE", help="session database")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.json", help="output JSON")
    export.add_argument(
        "--partial", action="store_true", help="also write images with unfinished objects (default: finished images only)"
    )
    export.add_argument("--annotator", default=None, metavar="NAME", help="use this annotator's answers only")
    export.add_argument(
        "--boxes",
        action="store_true",
        help="a session from a folder: write the boxes of the finished images (with extreme_points), no points",
    )
    export.set_defaults(handler=_run_export)

    progress = actions.add_parser("progress", help="print objects done, seconds per point and agreement")
    progress.add_argument("--db", type=Path, required=True, metavar="FILE", help="session database")
    progress.add_argument("--json", action="store_true", help="print JSON instead of a table")
    progress.set_defaults(handler=_run_progress)

    release = actions.add_parser("release", help="give the unfinished objects of an annotator (or everyone) back to the pool")
    release.add_argument("--db", type=Path, required=True, metavar="FILE", help="session database")
    release.add_argument(
        "--annotator", default=None, metavar="NAME", help="release this annotator's objects only (default: everyone's)"
    )
    release.set_defaults(handler=_run_release)
