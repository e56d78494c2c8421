"""Gold questions: points whose right answer the input's masks give, asked to check annotators.

With ``serve --gold SHARE`` (the input must have masks) every annotator first answers a short
*training round* of :attr:`GoldPlan.training` gold questions, each followed by feedback (the
page shows whether the answer was right), and then one gold question after every
``round(1 / SHARE)`` answers of theirs, looking like any other point. Gold answers are stored
apart from the answers (``gold_answers``): they never reach the export or the hand-out, and the
progress page reports each annotator's accuracy on them.

Gold question ``k`` of an annotator is a fixed point (a hash of their name and ``k``): object
points and background points in turn, so that the training round shows both. Where a gold
question goes among the annotator's points depends only on how many points they answered and
how many gold questions, so every reply of the server lists the same sequence and the page,
which runs ahead of the server, stays in step with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pointsup.errors import PointsupError

if TYPE_CHECKING:
    from pointsup.annotator.store import AnnotationStore

#: gold questions in the training round, unless ``--training`` says otherwise
DEFAULT_TRAINING = 6


class GoldError(PointsupError, ValueError):
    """Gold questions asked of a session that cannot have them (no masks)."""


@dataclass(frozen=True)
class GoldQuestion:
    """An annotator's ``index``-th gold question: a point and its mask value."""

    index: int
    position: int
    point_index: int
    truth: int
    training: bool


@dataclass(frozen=True)
class GoldPlan:
    """Which gold questions to ask and when (see the module docstring).

    Attributes:
        share: gold questions per answer after the training round (0: none).
        training: gold questions with feedback before the first point.
        pools: the ``(position, point_index)`` of points whose mask value is 0, and of those whose value is 1.
    """

    share: float
    training: int
    pools: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]

    @classmethod
    def for_store(cls, store: AnnotationStore, share: float, training: int = DEFAULT_TRAINING) -> GoldPlan:
        """The plan for a session.

        Raises:
            GoldError: the session has no masks, or ``share`` is not in [0, 1).
        """
        if not 0.0 <= share < 1.0:
            raise GoldError(f"--gold must be at least 0 and below 1, got {share}")
        if training < 0:
            raise GoldError(f"--training must be >= 0, got {training}")
        pools: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        for obj in store.objects():
            if obj.mask_values is not None:
                for index, value in enumerate(obj.mask_values.tolist()):
                    pools[int(value)].append((obj.position, index))
        if not (pools[0] or pools[1]):
            raise GoldError(f"--gold needs masks: no object of {store.settings.dataset_path} has a usable mask")
        return cls(share, training, (tuple(pools[0]), tuple(pools[1])))

    @property
    def every(self) -> int:
        """Answers between two gold questions after the training round (0: none)."""
        return round(1.0 / self.share) if self.share > 0 else 0

    def due_before(self, answered: int) -> int:
        """How many gold questions come before the annotator's answer number ``answered + 1``."""
        return self.training + (answered // self.every if self.every else 0)

    def question(self, annotator_key: str, index: int) -> GoldQuestion:
        """The annotator's ``index``-th gold question."""
        truth = 1 - index % 2  # object, background, object...
        pool = self.pools[truth] or self.pools[1 - truth]
        digest = hashlib.blake2b(f"{annotator_key}\0{index}".encode(), digest_size=8).digest()
        position, point_index = pool[int.from_bytes(digest, "big") % len(pool)]
        truth = truth if self.pools[truth] else 1 - truth
        return GoldQuestion(index, position, point_index, truth, index < self.training)

    def sequence(self, annotator_key: str, answered: int, gold_answered: int, upcoming: int) -> list[GoldQuestion | int]:
        """The annotator's next questions: gold questions, and ``k`` for their ``k``-th upcoming
        point (``0 <= k < upcoming``), in the order they are asked."""
        order: list[GoldQuestion | int] = []
        gold = gold_answered
        for k in range(upcoming):
            while gold < self.due_before(answered + k):
                order.append(self.question(annotator_key, gold))
                gold += 1
            order.append(k)
        return order
