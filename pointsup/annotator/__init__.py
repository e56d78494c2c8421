"""The point-labelling web tool (``pointsup annotate``): the paper's annotation interface.

Modules: :mod:`~pointsup.annotator.tasks` (objects and their points, as ``pointsup simulate``
samples them), :mod:`~pointsup.annotator.database` and :mod:`~pointsup.annotator.store` (the
session in SQLite: hand-out, answers, undo), :mod:`~pointsup.annotator.api` and
:mod:`~pointsup.annotator.server` (the JSON API and the HTTP server), ``static/`` (the
labelling page), :mod:`~pointsup.annotator.progress` and
:mod:`~pointsup.annotator.progress_page` (progress report), :mod:`~pointsup.annotator.export`
(the P_N point file), :mod:`~pointsup.annotator.images` (image bytes for the browser),
:mod:`~pointsup.annotator.browser` and :mod:`~pointsup.annotator.screenshots` (headless
Chromium for tests and the README), :mod:`~pointsup.annotator.assist` and
:mod:`~pointsup.annotator.assist_progress` (model-assisted labelling: the model's suggestion at
each point, and what it changed), :mod:`~pointsup.annotator.cli` (the commands).
"""
