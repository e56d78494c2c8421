"""What a hostile page or client cannot do to a labelling session: change it with a GET, keep
objects by claiming and walking away, drive the terminal through the log, or make the server
print tracebacks; and 100 simultaneous connections are all served."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotator_testing import Api, true_labels

from pointsup.annotator.server import AnnotationServer, escape_for_log, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.data.synthetic import SyntheticDataset

#: every GET route the server answers, with a name that has never claimed anything
GET_ROUTES = (
    "/",
    "/progress",
    "/api/progress",
    "/api/state?annotator=mallory",
    "/image/1",
    "/static/annotate.js",
    "/static/annotator.css",
    "/no/such/route",
    "/api/state",
)


def session_digest(path: Path) -> str:
    """SHA-256 of every row of every table, read through a separate connection (the WAL
    file makes the database file's own bytes a poor witness)."""
    digest = hashlib.sha256()
    connection = sqlite3.connect(path)
    try:
        for line in connection.iterdump():
            digest.update(line.encode())
    finally:
        connection.close()
    return digest.hexdigest()


def test_no_get_route_changes_the_session(api: Api, store: AnnotationStore) -> None:
    labels = true_labels(store)
    first = api.state("alice")["tasks"][0]
    assert api.answer("alice", first, labels[(first["position"], first["point_index"])])[0] == 200
    for path in GET_ROUTES:
        before = session_digest(store.path)
        for _ in range(3):
            api.request("GET", path)
        assert session_digest(store.path) == before, path


def test_get_state_shows_held_objects_and_claims_none(api: Api, store: AnnotationStore) -> None:
    for _ in range(30):  # what an <img src="http://127.0.0.1:PORT/api/state?annotator=X"> does
        assert api.peek("mallory")["tasks"] == []
    assert store.assignments() == []
    claimed = api.state("alice")  # the page's POST claims
    assert claimed["tasks"]
    assert api.peek("alice")["tasks"] == claimed["tasks"]


def test_cross_site_posts_are_refused(api: Api, store: AnnotationStore) -> None:
    status, payload = api.post("/api/state", {"annotator": "mallory"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403 and "cross-site" in payload["error"]
    status, _ = api.post("/api/state", {"annotator": "mallory"}, headers={"Origin": "http://evil.example"})
    assert status == 403
    assert store.assignments() == []
    assert api.post("/api/state", {"annotator": "alice"}, headers={"Sec-Fetch-Site": "same-origin"})[0] == 200


@pytest.fixture
def quick_expiry_store(tmp_path: Path, synthetic: SyntheticDataset) -> Iterator[AnnotationStore]:
    store, _ = open_session(tmp_path / "session.db", synthetic.train_json, claim_timeout_s=0.3)
    yield store
    store.close()


def test_unused_claims_of_an_inactive_annotator_expire(quick_expiry_store: AnnotationStore) -> None:
    store = quick_expiry_store
    total = store.settings.num_objects
    grabbers = [f"tab{k}" for k in range(total)]
    for name in grabbers:  # forgotten tabs take every object
        store.next_points(name, 6)
    assert store.next_points("alice", 6) == []
    time.sleep(0.5)
    tasks = store.next_points("alice", 6)
    assert tasks, "alice got nothing although every claim was unused and older than the timeout"
    held = {}
    for annotator, position, _ in store.assignments():
        held.setdefault(position, []).append(annotator)
    assert all(len(holders) == 1 for holders in held.values())  # overlap 1 still holds


def test_partly_answered_objects_of_an_inactive_annotator_are_continued(quick_expiry_store: AnnotationStore) -> None:
    store = quick_expiry_store
    bob = store.next_points("bob", 6)
    for k in range(3):  # bob answers three points of his first object, then leaves
        store.record_answer("bob", bob[k].position, bob[k].point_index, 1, 400.0)
    time.sleep(0.5)
    tasks = store.next_points("alice", 6)
    assert (tasks[0].position, tasks[0].point_index) == (bob[0].position, 3)  # alice continues where bob stopped
    assert {position for annotator, position, _ in store.assignments() if annotator == "bob"} == set()
    assert [(a.annotator, a.point_index) for a in store.live_answers()] == [("bob", 0), ("bob", 1), ("bob", 2)]
    assert store.undo_last("bob") is None  # answers on a released object stay as they are
    assert store.undo_last("alice") is None


def test_recent_activity_keeps_claims(quick_expiry_store: AnnotationStore) -> None:
    store = quick_expiry_store
    bob = store.next_points("bob", 20)  # claims two objects
    held = {position for annotator, position, _ in store.assignments() if annotator == "bob"}
    assert len(held) == 2
    time.sleep(0.2)
    store.record_answer("bob", bob[0].position, bob[0].point_index, 1, 400.0)  # active within the timeout
    time.sleep(0.2)
    store.next_points("alice", 6)
    bob_objects = {position for annotator, position, _ in store.assignments() if annotator == "bob"}
    assert bob_objects == held
    alice_objects = {position for annotator, position, _ in store.assignments() if annotator == "alice"}
    assert alice_objects.isdisjoint(bob_objects)


def test_log_lines_escape_what_the_client_sent(store: AnnotationStore, synthetic: SyntheticDataset) -> None:
    lines: list[str] = []
    with serving_in_background(AnnotationServer(store, synthetic.image_dir, log=lines.append)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /\x1b[2J\x1b]0;owned\x07 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.recv(4096)
    assert lines, "the refused request was not logged"
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert any("\\x1b[2J" in line for line in lines)
    assert escape_for_log("ok\r\nfake line") == "ok\\r\\nfake line"


def test_a_client_that_disconnects_costs_one_log_line(
    store: AnnotationStore, synthetic: SyntheticDataset, capfd: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    with serving_in_background(AnnotationServer(store, synthetic.image_dir, log=lines.append)) as server:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
                sock.sendall(
                    b"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 500\r\n\r\n{"annot'
                )
        time.sleep(0.3)
        assert Api(server.port).request("GET", "/api/progress")[0] == 200
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert all("Traceback" not in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_a_hundred_simultaneous_connections_are_all_served(api: Api) -> None:
    barrier = threading.Barrier(100)
    statuses: list[int] = []

    def client() -> None:
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=30)
        barrier.wait()
        try:
            sock.sendall(b"GET /api/progress HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
            statuses.append(int(response.split(b" ", 2)[1]))
        finally:
            sock.close()

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 100
