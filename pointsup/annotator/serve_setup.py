"""What ``annotate serve`` does the same way for a COCO file and for a folder of photos: the
``--weights`` model checked before anything is written, its suggestions computed before serving,
and the server opened on ``--host``/``--port``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pointsup.annotator.store import AnnotationStore
from pointsup.errors import CommandError, PointsupError

if TYPE_CHECKING:
    from pointsup.annotator.assist import SuggestionModel
    from pointsup.annotator.server import AnnotationServer


def assist_model(
    args: argparse.Namespace, dataset: Path | None = None, categories: dict[int, str] | None = None
) -> SuggestionModel | None:
    """The ``--weights`` model (None without), checked against the categories of ``dataset``
    when it can be read, or against ``categories`` (id to name): a checkpoint that is missing,
    unreadable or made for other categories is refused before anything is written."""
    if args.weights is None:
        if args.skip_confident is not None:
            raise CommandError("--skip-confident needs --weights (the model whose suggestions it trusts)")
        return None
    from pointsup.annotator.assist import SuggestionModel, check_skip_threshold
    from pointsup.points.format import read_coco_json

    if args.skip_confident is not None:
        check_skip_threshold(args.skip_confident)
    model = SuggestionModel.load(args.weights, args.device)
    if dataset is not None:
        try:
            categories = {int(c["id"]): str(c.get("name", c["id"])) for c in read_coco_json(dataset)["categories"]}
        except (PointsupError, KeyError, TypeError, ValueError):
            categories = None  # a malformed file: open_session says what is wrong with it
        if categories:
            model.check_categories(categories, str(dataset))
    elif categories:
        model.check_categories(categories, "--categories")
    return model


def start_assist_for_serve(args: argparse.Namespace, store: AnnotationStore, model: SuggestionModel | None, source: str) -> str:
    """``--weights``: model suggestions for the session (see :mod:`pointsup.annotator.assist`),
    computed before serving; returns a line to print ("" without ``--weights``). Closes the
    store when the model does not fit."""
    if model is None:
        return ""
    from pointsup.annotator.assist import start_assist
    from pointsup.annotator.server import log_to_stderr

    try:
        _, computed = start_assist(
            store, model, args.images, source=source, skip_confident=args.skip_confident, log=log_to_stderr
        )
    except PointsupError:
        store.close()
        raise
    except KeyboardInterrupt:
        store.close()
        raise CommandError("interrupted while computing the model's suggestions; those computed are kept") from None
    skip = (
        f"; points it is {args.skip_confident:g} sure of are labelled by it, not asked (--skip-confident)"
        if args.skip_confident is not None
        else ""
    )
    return f"model suggestions from {args.weights} ({computed} objects computed now, the others stored before){skip}"


def open_server(args: argparse.Namespace, store: AnnotationStore, token: str | None) -> AnnotationServer:
    """The labelling server for ``store`` on ``args.host``/``args.port`` (not yet serving); a
    one-line CommandError, with the store closed, when the address cannot be used."""
    from pointsup.annotator.server import AnnotationServer, log_to_stderr

    try:
        return AnnotationServer(
            store, args.images, host=args.host, port=args.port, token=token, log=None if args.quiet else log_to_stderr
        )
    except OSError as exc:
        store.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
