"""Durability: the real server process (`python -m pointsup annotate serve`) is killed with
SIGKILL in the middle of a session; after a restart every acknowledged answer is there and
each annotator resumes at the next point."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from annotator_testing import Api, start_server, true_labels

from pointsup.annotator.store import LABEL_CODES, AnnotationStore
from pointsup.data.synthetic import SyntheticDataset

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def answer_series(api: Api, annotator: str, labels: dict[tuple[int, int], str], count: int) -> dict[tuple[int, int], str]:
    """``count`` acknowledged answers in order: point to label."""
    acknowledged: dict[tuple[int, int], str] = {}
    tasks = api.state(annotator)["tasks"]
    for _ in range(count):
        key = (tasks[0]["position"], tasks[0]["point_index"])
        status, reply = api.answer(annotator, tasks[0], labels[key])
        assert status == 200, reply
        acknowledged[key] = labels[key]
        tasks = reply["tasks"]
    return acknowledged


def test_sigkill_loses_no_acknowledged_answer(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    db = tmp_path / "session.db"
    server = start_server(synthetic.train_json, synthetic.image_dir, "--db", str(db))
    bob_acknowledged: list[tuple[int, int]] = []
    try:
        api = Api(server.port)
        reader = AnnotationStore.open(db)
        labels = true_labels(reader)
        num_points = reader.settings.num_points
        reader.close()
        alice = answer_series(api, "alice", labels, 23)
        undone = api.undo("alice")["undone"]
        del alice[(undone["position"], undone["point_index"])]

        def bob() -> None:  # answers as fast as he can while the server is killed
            tasks = api.state("bob")["tasks"]
            while tasks:
                try:
                    status, reply = api.answer("bob", tasks[0], "unsure")
                except OSError:
                    return
                if status != 200:
                    return
                bob_acknowledged.append((tasks[0]["position"], tasks[0]["point_index"]))
                tasks = reply["tasks"]

        thread = threading.Thread(target=bob)
        thread.start()
        deadline = time.monotonic() + 20
        while len(bob_acknowledged) < 15 and time.monotonic() < deadline:
            time.sleep(0.002)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        thread.join(timeout=20)
    finally:
        server.stop()
    assert len(bob_acknowledged) >= 15, "bob was answering when the server was killed"

    server = start_server(synthetic.train_json, synthetic.image_dir, "--db", str(db))
    try:
        api = Api(server.port)
        store = AnnotationStore.open(db)
        live = {(a.annotator, a.position, a.point_index): a.label for a in store.live_answers()}
        assert {k[1:]: v for k, v in live.items() if k[0] == "alice"} == {k: LABEL_CODES[v] for k, v in alice.items()}
        bob_live = sorted(k[1:] for k, v in live.items() if k[0] == "bob" and v == LABEL_CODES["unsure"])
        # every acknowledged answer is there; at most the one in flight at the kill was committed too
        assert bob_live[: len(bob_acknowledged)] == bob_acknowledged
        assert len(bob_live) - len(bob_acknowledged) in (0, 1)
        with store._read() as connection:  # noqa: SLF001 - the test inspects the file itself
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store.close()
        # each annotator resumes at their next point
        assert api.state("alice")["tasks"][0]["key"] == f"{undone['position']}:{undone['point_index']}"
        position, index = bob_live[-1]
        resumed = api.state("bob")["tasks"][0]
        if index + 1 < num_points:
            assert (resumed["position"], resumed["point_index"]) == (position, index + 1)
        else:
            assert resumed["position"] > position and resumed["point_index"] == 0
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0  # SIGTERM stops the server cleanly
    finally:
        server.stop()
