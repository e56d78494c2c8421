"""Which library computes COCO AP: faster-coco-eval when it is installed, pycocotools otherwise.

`faster-coco-eval <https://github.com/MiXaiLL76/faster_coco_eval>`_ (Apache-2.0, a 0.6 MB wheel
needing only NumPy) keeps pycocotools' ``COCO``/``COCOeval`` API and computes the per-image
matching and the accumulation in C++. On the shared datasets and on a generated 5,000-image
results file it gives the same 12 statistics and per-category APs as pycocotools (differences
of 1e-16), and evaluates boxes 3.4-9 and masks 2.4-4.5 times faster
(``benchmarks/coco_eval_speed.py``, ``docs/results_speed.md``).

This module is the one place that chooses. In order:

1. the ``backend`` argument of :func:`coco_backend` (``COCOEvaluator(..., backend=...)``);
2. the environment variable ``POINTSUP_COCO_EVAL``;
3. ``auto``: faster-coco-eval if it can be imported, else pycocotools.

Each names one of ``auto``, ``faster_coco_eval`` (an error when it is not installed) or
``pycocotools`` (forces the reference implementation).

What differs between the two and is handled here: faster-coco-eval's evaluator class is
``faster_coco_eval.COCOeval_faster`` (its ``COCOeval`` alias only changes how it prints), it
logs instead of printing (``print_function``; silenced here, pycocotools' prints are redirected
by the caller), its ``eval`` has extra keys (``matched``...) and its ``all_stats`` two more
values (AR50, AR75), while ``stats`` holds the same 12 numbers. ``iscrowd``, empty results,
``params`` (``imgIds``, ``catIds``, ``iouThrs``, ``areaRng``, ``maxDets``) and ``eval["precision"]``
([T, R, K, A, M]) behave as in pycocotools.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
from dataclasses import dataclass
from typing import Any

from pointsup.errors import PointsupError

ENV_VAR = "POINTSUP_COCO_EVAL"
AUTO = "auto"
FASTER = "faster_coco_eval"
PYCOCOTOOLS = "pycocotools"
#: in order of preference
BACKENDS = (FASTER, PYCOCOTOOLS)
CHOICES = (AUTO, *BACKENDS)


class CocoBackendError(PointsupError, ValueError):
    """An unknown backend name, or a backend asked for that is not installed."""


def _quiet(*args: Any, **kwargs: Any) -> None:
    """faster-coco-eval's ``print_function``: nothing is printed or logged."""


@dataclass(frozen=True)
class CocoBackend:
    """A COCO evaluation library: its ``COCO`` and ``COCOeval`` classes.

    Attributes:
        name: ``"faster_coco_eval"`` or ``"pycocotools"``.
        version: the installed version.
        coco_class: the library's ``COCO`` (ground truth and results).
        cocoeval_class: the library's evaluator class, with pycocotools' ``COCOeval`` API.
    """

    name: str
    version: str
    coco_class: type
    cocoeval_class: type

    @property
    def label(self) -> str:
        """``"name version"``, as the evaluator records it."""
        return f"{self.name} {self.version}"

    def coco(self, dataset: dict[str, Any]) -> Any:
        """A ``COCO`` of an already loaded ``dataset`` dict (used as is, not copied), indexed without printing."""
        coco = self.coco_class()
        if self.name == FASTER:
            coco.print_function = _quiet
        coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def cocoeval(self, ground_truth: Any, detections: Any, iou_type: str) -> Any:
        """An evaluator of ``detections`` against ``ground_truth`` (both this backend's ``COCO``)
        for ``iou_type`` (``"bbox"`` or ``"segm"``). pycocotools' prints to stdout; faster-coco-eval's is silent."""
        if self.name == FASTER:
            return self.cocoeval_class(ground_truth, detections, iouType=iou_type, print_function=_quiet)
        return self.cocoeval_class(ground_truth, detections, iouType=iou_type)


def _faster() -> CocoBackend:
    import faster_coco_eval

    return CocoBackend(FASTER, str(faster_coco_eval.__version__), faster_coco_eval.COCO, faster_coco_eval.COCOeval_faster)


def _pycocotools() -> CocoBackend:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    try:
        version = importlib.metadata.version("pycocotools")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on the path
        version = "unknown"
    return CocoBackend(PYCOCOTOOLS, version, COCO, COCOeval)


def faster_coco_eval_available() -> bool:
    """Whether faster-coco-eval can be imported."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def coco_backend(backend: str | None = None) -> CocoBackend:
    """The COCO evaluation library to use.

    Args:
        backend: ``"auto"``, ``"faster_coco_eval"`` or ``"pycocotools"``; None reads
            ``$POINTSUP_COCO_EVAL`` (``auto`` when unset or empty).

    Raises:
        CocoBackendError: an unknown name, or ``faster_coco_eval`` asked for but not installed.
    """
    source = "backend"
    if backend is None:
        backend, source = os.environ.get(ENV_VAR, "").strip() or AUTO, ENV_VAR
    choice = backend.strip().lower().replace("-", "_")
    if choice not in CHOICES:
        raise CocoBackendError(f"{source}={backend!r}: the COCO evaluation backend must be one of {', '.join(CHOICES)}")
    if choice == PYCOCOTOOLS or (choice == AUTO and not faster_coco_eval_available()):
        return _pycocotools()
    try:
        return _faster()
    except ImportError as exc:
        raise CocoBackendError(
            f"{source}={backend!r}: faster-coco-eval is not installed ({exc}); `pip install faster-coco-eval`, "
            f"or use {PYCOCOTOOLS!r}"
        ) from exc
