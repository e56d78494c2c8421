"""Fixtures of the annotator tests: a small synthetic dataset, a session, a running server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from annotator_testing import Api  # noqa: E402

from pointsup.annotator.browser import launched_chromium  # noqa: E402
from pointsup.annotator.server import AnnotationServer, serving_in_background  # noqa: E402
from pointsup.annotator.store import AnnotationStore, open_session  # noqa: E402
from pointsup.data.synthetic import SyntheticDataset, generate_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """3 images of 128 x 128 with masks (16 objects in the train split); do not modify."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_images=3, image_size=128, show_progress=False)


@pytest.fixture
def store(tmp_path: Path, synthetic: SyntheticDataset) -> Iterator[AnnotationStore]:
    store, created = open_session(tmp_path / "session.db", synthetic.train_json)
    assert created
    yield store
    store.close()


@pytest.fixture
def server(store: AnnotationStore, synthetic: SyntheticDataset) -> Iterator[AnnotationServer]:
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as running:
        yield running


@pytest.fixture
def api(server: AnnotationServer) -> Api:
    return Api(server.port)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per test module (the browser tests skip when it is unavailable)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def session(tmp_path: Path, synthetic: SyntheticDataset) -> Iterator[tuple[AnnotationServer, AnnotationStore]]:
    """A served session of 3 points per object on :func:`synthetic`, with its store."""
    store, _ = open_session(tmp_path / "session.db", synthetic.train_json, num_points=3)
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        yield server, store
    store.close()
