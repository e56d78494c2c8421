"""Sessions started from a folder of photos (``annotate serve --images DIR --categories a,b,c``).

:func:`scan_image_folder` lists the photos (every file under the folder, hidden ones aside, must
be an image the browser shows, and readable; links to folders are not followed and refused, links
to files must lead to a file inside the folder that no other name leads to),
:func:`parse_categories` reads the category list (``a,b,c``, always names; ``@FILE``: a text file
with one name per line), :func:`open_box_session` creates or
resumes the session and :func:`serve_folder` is the command. The session has no COCO file: the
database records the images (ids 1, 2... in file name order, with their sizes), the categories
(ids 1, 2... in the given order) and ``meta.source = "folder"``; the boxes come from the box
stage (:mod:`pointsup.annotator.box_store`).
"""

from __future__ import annotations

import argparse
import os
import unicodedata
from pathlib import Path
from typing import Any

from pointsup.annotator.box_store import FOLDER_SOURCE, STAGES, BoxStage
from pointsup.annotator.database import StoreError, create_database, holds_session
from pointsup.annotator.images import UnreadableImage, check_image_folder, read_image_size
from pointsup.annotator.store import DEFAULT_CLAIM_TIMEOUT_S, DEFAULT_NUM_POINTS, AnnotationStore, settings_mismatches
from pointsup.errors import CommandError, PointsupError
from pointsup.points.simulate import DEFAULT_SEED

#: file name endings of the images a browser shows
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
#: what Pillow calls the formats of those files (MPO: a JPEG with extra pictures, from some cameras)
BROWSER_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"})
#: files some systems leave in folders: not photos, not worth refusing the folder for
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
MAX_CATEGORY_NAME = 100
#: what starts a --categories value that names a file of category names
FILE_PREFIX = "@"
#: endings of file names: a single category name with one is refused (a file is given as @FILE)
_LIST_SUFFIXES = (".txt", ".csv", ".names", ".list", ".json", ".yaml", ".yml")


class FolderError(PointsupError):
    """The images folder or the category list cannot start a session (one line, naming it)."""


def default_folder_db_path(images_dir: Path) -> Path:
    """``photos/`` -> ``photos.points.db`` beside the folder.

    Raises:
        FolderError: the folder is the root of the file system (nothing lies beside it).
    """
    folder = images_dir.resolve()
    if not folder.name:
        raise FolderError(f"--images {images_dir}: the root folder has no place beside it for the session: give --db FILE")
    return folder.with_name(f"{folder.name}.points.db")


def _files(count: int) -> str:
    return "1 file is" if count == 1 else f"{count} files are"


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def image_files(images_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """``(image files, other files, links to folders)`` under the folder, as sorted POSIX paths
    relative to it (hidden files and folders, and :data:`IGNORED_FILES`, left out). Links to
    folders are listed, not followed: their photos would be counted twice (a link into the
    folder), lie outside it, or never end (a link to a folder above)."""
    images: list[str] = []
    others: list[str] = []
    linked: list[str] = []
    for root, folders, files in os.walk(images_dir):  # links to folders are not followed
        visible = sorted(f for f in folders if not f.startswith("."))
        linked += [Path(root, f).relative_to(images_dir).as_posix() for f in visible if os.path.islink(os.path.join(root, f))]
        folders[:] = [f for f in visible if not os.path.islink(os.path.join(root, f))]
        for name in files:
            relative = Path(root, name).relative_to(images_dir)
            if _is_hidden(relative) or name.lower() in IGNORED_FILES:
                continue
            (images if name.lower().endswith(IMAGE_SUFFIXES) else others).append(relative.as_posix())
    return sorted(images), sorted(others), sorted(linked)


def scan_image_folder(images_dir: Path) -> list[tuple[str, int, int]]:
    """``(file name, width, height)`` of every photo under ``images_dir``, sorted by name.

    Raises:
        FolderError: the folder is missing or holds no image, a file is not an image a browser
            shows, or an image cannot be read (each named, with how many there are like it).
    """
    if not images_dir.is_dir():
        raise FolderError(f"--images {images_dir}: no such folder")
    names, others, linked = image_files(images_dir)
    if linked:
        raise FolderError(
            f"--images {images_dir}: {len(linked)} of its subfolders {'is a link' if len(linked) == 1 else 'are links'} "
            f"to a folder, e.g. {images_dir / linked[0]} -> {os.readlink(images_dir / linked[0])}; links to folders are "
            "not followed (their photos would count twice, or lie outside the folder): put the folder itself there"
        )
    if others:
        raise FolderError(
            f"--images {images_dir}: {_files(len(others))} not images a browser shows ({' '.join(IMAGE_SUFFIXES)}), "
            f"e.g. {images_dir / others[0]}; move them out of the folder"
        )
    if not names:
        raise FolderError(f"--images {images_dir}: no image files ({' '.join(IMAGE_SUFFIXES)}) in the folder")
    root = os.path.realpath(images_dir)
    found, bad = [], []
    seen: dict[tuple[int, int], str] = {}  # (device, inode) -> the first name of each file
    for name in names:
        path = images_dir / name
        if not os.path.realpath(path).startswith(root + os.sep):
            bad.append((path, "a link to a file outside the folder"))
            continue
        try:
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) in seen:
                bad.append((path, f"the same file as {seen[(stat.st_dev, stat.st_ino)]} (a link): it would be asked twice"))
                continue
            seen[(stat.st_dev, stat.st_ino)] = name
            width, height, kind = read_image_size(path, decode=True)
        except (OSError, UnreadableImage) as exc:
            bad.append((path, f"not a readable image: {exc}"))
            continue
        if kind not in BROWSER_FORMATS:
            bad.append((path, f"a {kind} file, which browsers do not show"))
            continue
        found.append((name, int(width), int(height)))
    if bad:
        path, reason = bad[0]
        raise FolderError(f"--images {images_dir}: {len(bad)} of {len(names)} image files cannot be used, e.g. {path} ({reason})")
    return found


def _category_key(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def parse_categories(value: str) -> list[str]:
    """The category names of ``--categories``: comma-separated names (``a,b,c``; always names,
    whatever files there are), or, when ``value`` starts with ``@``, the file after it, with one
    name per line (blank lines and ``#`` comments skipped; commas also separate names).

    Raises:
        FolderError: a missing or unreadable file, no names, a name given twice (case aside), a
            name that is too long or holds control characters, or a single name that looks like
            a file name (``names.txt``: a file is given as ``@names.txt``).
    """
    is_file = value.startswith(FILE_PREFIX)
    path = Path(value[len(FILE_PREFIX) :])
    where = f"--categories {value}"
    entries: list[tuple[str, str]] = []  # (name, where it was given)
    if is_file and not path.name:
        raise FolderError(f"{where}: give the file of category names after {FILE_PREFIX}, e.g. --categories @names.txt")
    if not is_file and "," not in value and value.strip().lower().endswith(_LIST_SUFFIXES):
        raise FolderError(
            f"{where}: a category name that looks like a file name; to read the names from a file, give "
            f"--categories {FILE_PREFIX}{value.strip()}"
        )
    if is_file:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise FolderError(f"{where}: no such file (give the names as a,b,c or @FILE with one per line)") from None
        except UnicodeDecodeError:
            raise FolderError(f"{where}: not a UTF-8 text file") from None
        except OSError as exc:
            raise FolderError(f"{where}: cannot be read ({exc.strerror or exc})") from None
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith("#"):
                continue
            entries += [(part.strip(), f"line {number}") for part in line.split(",") if part.strip()]
    else:
        entries = [(part.strip(), f"name {k}") for k, part in enumerate(value.split(","), 1) if part.strip()]
    if not entries:
        raise FolderError(f"{where}: no category names in it" if is_file else "--categories: no category names given")
    seen: dict[str, str] = {}
    for name, at in entries:
        if len(name) > MAX_CATEGORY_NAME:
            raise FolderError(f"{where}: the category name at {at} is longer than {MAX_CATEGORY_NAME} characters")
        if any(unicodedata.category(c).startswith("C") for c in name):
            raise FolderError(f"{where}: the category name at {at} holds control characters")
        key = _category_key(name)
        if key in seen:
            raise FolderError(f"{where}: {name!r} is listed twice ({seen[key]} and {at})")
        seen[key] = at
    return [name for name, _ in entries]


def open_box_session(
    db_path: str | Path,
    images_dir: str | Path,
    categories: list[str] | None,
    *,
    num_points: int | None = None,
    seed: int | None = None,
    overlap: int | None = None,
    claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
) -> tuple[AnnotationStore, bool]:
    """Open the session from a folder of photos in ``db_path``, creating it when the database
    holds none (then ``categories`` must be given). Returns the store and whether it was created.

    Raises:
        FolderError: a new session without categories, or a folder or list that cannot be used.
        StoreError: the database holds another kind of session, or one made with other settings
            or categories, or cannot be created where asked.
        ImageFolderError: a photo of the session is missing from ``images_dir``.
        ValueError: invalid settings.
    """
    db_path, images = Path(db_path), Path(images_dir)
    created = not holds_session(db_path)
    if created:
        if categories is None:
            raise FolderError(f"{db_path} holds no session yet: give --categories a,b,c (or @FILE) to start one from {images}")
        if overlap is not None and overlap < 1:
            raise ValueError(f"overlap must be >= 1, got {overlap}")
        photos = scan_image_folder(images)
        coco: dict[str, Any] = {
            "info": {"description": f"boxes drawn with pointsup annotate on the photos of {images}"},
            "images": [{"id": k, "file_name": name, "width": w, "height": h} for k, (name, w, h) in enumerate(photos, 1)],
            "categories": [{"id": k, "name": name} for k, name in enumerate(categories, 1)],
            "annotations": [],
        }
        create_database(
            db_path,
            coco,
            dataset_path=str(images),
            dataset_sha256="",
            num_points=DEFAULT_NUM_POINTS if num_points is None else num_points,
            seed=DEFAULT_SEED if seed is None else seed,
            overlap=1 if overlap is None else overlap,
            extra_meta={"source": FOLDER_SOURCE},
        )
    store = AnnotationStore.open(db_path, claim_timeout_s=claim_timeout_s)
    recorded = store.settings
    if not recorded.from_folder:
        store.close()
        raise StoreError(
            f"{db_path} holds a session made from {recorded.dataset_path}: give that file (DATASET.json) to resume it"
        )
    try:
        check_image_folder(images, [name for name, _, _ in store.images.values()])
    except PointsupError:
        store.close()
        raise
    mismatches = settings_mismatches(recorded, num_points, seed, overlap)
    names = [store.category_names[k] for k in sorted(store.category_names)]
    if categories is not None and categories != names:
        mismatches.append(f"--categories {','.join(categories)} (it was made with {','.join(names)})")
    if mismatches:
        store.close()
        raise StoreError(f"{db_path} does not fit " + "; ".join(mismatches) + "; use another --db for a new session")
    return store, created


def new_files(store: AnnotationStore, images_dir: Path) -> list[str]:
    """Image files under the folder that the session does not have (added after it was made)."""
    known = {name for name, _, _ in store.images.values()}
    return [name for name in image_files(images_dir)[0] if name not in known]


def serve_folder(args: argparse.Namespace, token: str | None) -> None:
    """``pointsup annotate serve --images DIR --categories ...``: create or resume a session
    from a folder of photos and serve it (the box page, and the point page unless ``--stage
    boxes``) until stopped."""
    from pointsup.annotator.server import run_until_stopped

    if args.use_points:
        raise CommandError("--use-points labels the points of DATASET.json; a session from a folder of photos draws them")
    if args.gold is not None:
        raise CommandError("--gold checks answers against masks; a session from a folder of photos has none")
    from pointsup.annotator.serve_setup import assist_model, open_server, start_assist_for_serve

    stage = args.stage or "both"
    assert stage in STAGES
    db_path = args.db or default_folder_db_path(args.images)
    categories = None if args.categories is None else parse_categories(args.categories)
    # --weights (model-assisted labelling): loaded before anything is written; suggestions for the
    # objects made while serving come from a background thread (pointsup.annotator.assist)
    model = assist_model(args, categories=None if categories is None else dict(enumerate(categories, 1)))
    try:
        store, created = open_box_session(
            db_path,
            args.images,
            categories,
            num_points=args.points,
            seed=args.seed,
            overlap=args.overlap,
            claim_timeout_s=60.0 * args.claim_timeout,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    store.stage = stage
    assisting = start_assist_for_serve(args, store, model, str(args.images))
    server = open_server(args, store, token)
    settings, summary = store.settings, BoxStage(store).summary()
    names = [store.category_names[k] for k in sorted(store.category_names)]
    print(
        f"{'created' if created else 'resumed'} session {db_path}: {summary['images_total']} photos of {args.images} "
        f"({summary['images_finished']} with their boxes finished, {store.objects_total()} objects), "
        f"categories {', '.join(names)}; {settings.num_points} points per object (seed {settings.seed}, overlap {settings.overlap})"
    )
    added = new_files(store, args.images)
    if added:
        print(
            f"warning: {len(added)} image files of {args.images} came after the session was made (e.g. {added[0]}): they are not asked"
        )
    asked = {"both": "boxes, then points for the objects of each finished image", "boxes": "boxes only", "points": "points only"}
    print(f"stage {stage}: {asked[stage]}")
    if assisting:
        print(assisting)
    print(f"progress page: {server.url('/progress')}")
    if stage == "both":
        print(f"point page: {server.url('/')}")
    print(f"labelling page: {server.url('/' if stage == 'points' else '/boxes')}", flush=True)
    run_until_stopped(server)
