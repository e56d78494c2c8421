"""Security of the labelling server: only dataset images under the images folder, access
token, host and origin checks, and 4xx (never a crash or a corrupt database) for bad requests."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotator_testing import Api, start_server

from pointsup.annotator.server import MAX_BODY_BYTES, AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.data.synthetic import SyntheticDataset

SECRET = b"\x89PNG secret outside the images folder"


def raw_request(port: int, payload: bytes, shutdown_write: bool = False) -> bytes:
    """Send raw bytes, return the response's status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        if shutdown_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.fixture
def tricky(tmp_path: Path, synthetic: SyntheticDataset) -> Iterator[tuple[Api, AnnotationStore]]:
    """A dataset whose file names try to leave the images folder, served."""
    images = tmp_path / "images"
    shutil.copytree(synthetic.image_dir, images)
    (tmp_path / "secret.png").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.png", images / "escape.png")
    os.symlink(images / "000001.png", images / "inside.png")
    coco = json.loads(synthetic.train_json.read_text())
    names = ["../secret.png", str(tmp_path / "secret.png"), "escape.png", "inside.png"]
    base = coco["images"][0]
    for k, name in enumerate(names):
        coco["images"].append({**base, "id": 100 + k, "file_name": name})
    path = tmp_path / "tricky.json"
    path.write_text(json.dumps(coco))
    store, _ = open_session(tmp_path / "s.db", path)
    with serving_in_background(AnnotationServer(store, images)) as server:
        yield Api(server.port), store
    store.close()


def test_images_never_leave_the_images_folder(tricky: tuple[Api, AnnotationStore]) -> None:
    api, _ = tricky
    for image_id in (100, 101, 102):  # ../, absolute, symlink to outside
        status, body, _ = api.request("GET", f"/image/{image_id}")
        assert status == 403 and SECRET not in body
    status, body, _ = api.request("GET", "/image/103")  # a symlink that stays inside
    assert status == 200 and body.startswith(b"\x89PNG")
    for path in (
        "/image/../../secret.png",
        "/image/%2e%2e/%2e%2e/secret.png",
        "/static/../server.py",
        "/static/..%2fserver.py",
        "//etc/passwd",
        "/image/1/../../secret.png",
        "/image/-1",
        "/image/999999",
        "/image/1%00",
        "/image/0x1",
        "/..%5c..%5csecret.png",
        "/static/annotate.js/..",
    ):
        status, body, _ = api.request("GET", path)
        assert status == 404, path
        assert SECRET not in body and b"import" not in body


def test_access_token(tmp_path: Path, store: AnnotationStore, synthetic: SyntheticDataset) -> None:
    token = "s3cret-token-0123"
    with serving_in_background(AnnotationServer(store, synthetic.image_dir, token=token)) as server:
        assert server.url() == f"http://127.0.0.1:{server.port}/?token={token}"
        anonymous, wrong, bearer = Api(server.port), Api(server.port, token="wrong-token-000"), Api(server.port, token=token)
        for path in ("/", "/progress", "/api/state?annotator=a", "/image/1", "/static/annotate.js"):
            assert anonymous.request("GET", path)[0] == 401, path
            assert wrong.request("GET", path)[0] == 401, path
            assert bearer.request("GET", path)[0] == 200, path
        assert anonymous.post("/api/undo", {"annotator": "a"})[0] == 401
        # the URL token becomes an HttpOnly cookie and leaves the address bar
        status, _, headers = anonymous.request("GET", f"/?annotator=a&token={token}")
        assert status == 303 and headers["Location"] == "/?annotator=a"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and cookie.startswith(f"pointsup_token={token}")
        assert anonymous.request("GET", "/api/state?annotator=a", headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_non_local_binding_requires_a_generated_token(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    server = start_server(synthetic.train_json, synthetic.image_dir, "--db", str(tmp_path / "s.db"), "--host", "0.0.0.0")
    try:
        token = server.url.split("?token=", 1)[1]
        assert len(token) >= 20
        assert Api(server.port).request("GET", "/api/state?annotator=a")[0] == 401
        assert Api(server.port, token=token).request("GET", "/api/state?annotator=a")[0] == 200
    finally:
        server.stop()


def test_host_and_origin_checks(api: Api) -> None:
    port = api.port
    assert api.request("GET", "/", headers={"Host": f"localhost:{port}"})[0] == 200
    assert api.request("GET", "/", headers={"Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
    status, _ = api.post("/api/undo", {"annotator": "a"}, headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _ = api.post("/api/undo", {"annotator": "a"}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200


BAD_BODIES = [
    b"not json",
    b"[]",
    b"{}",
    b"null",
    b'"text"',
    b"\xff\xfe\x00",
    b'{"annotator": "a", "position": 0',
    b"[" * 8000 + b"]" * 8000,
]
BASE_ANSWER = {"annotator": "a", "position": 0, "point_index": 0, "label": "object", "response_ms": 100}
BAD_FIELDS = [
    {"label": "maybe"},
    {"label": 1},
    {"position": "0"},
    {"position": True},
    {"position": -1},
    {"position": 2**70},
    {"position": 1.5},
    {"point_index": None},
    {"response_ms": -5},
    {"response_ms": "fast"},
    {"annotator": ""},
    {"annotator": "x" * 300},
    {"annotator": "a\u0000b"},
    {"annotator": "   "},
    {"annotator": 7},
    {"extra": 1},
]


def test_bad_payloads_get_4xx_and_leave_the_database_intact(api: Api, store: AnnotationStore) -> None:
    port = api.port
    assert api.state("a")["tasks"]
    for body in BAD_BODIES:
        status, payload, _ = api.request("POST", "/api/answer", body, {"Content-Type": "application/json"})
        assert status == 400, body[:40]
        assert "error" in payload
    for change in BAD_FIELDS:
        status, payload = api.post("/api/answer", {**BASE_ANSWER, **change})
        assert status == 400, change
    status, _, _ = api.request("POST", "/api/answer", json.dumps(BASE_ANSWER).encode(), {"Content-Type": "text/plain"})
    assert status == 415  # a cross-site form could send text/plain without a preflight
    status, _, _ = api.request("POST", "/api/answer", b"x" * (MAX_BODY_BYTES + 1), {"Content-Type": "application/json"})
    assert status == 413
    assert api.request("GET", "/api/state")[0] == 400
    assert api.request("GET", "/api/state?annotator=a&annotator=b")[0] == 400
    assert api.request("GET", "/api/state?annotator=%00")[0] == 400
    assert api.request("POST", "/api/nothing", b"{}", {"Content-Type": "application/json"})[0] == 404
    for method in ("DELETE", "PUT", "HEAD", "BREW"):
        assert api.request(method, "/api/answer")[0] == 405, method

    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    assert (
        raw_request(port, b"POST /api/undo HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n\r\n").split()[1] == b"411"
    )
    chunked = b"POST /api/undo HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert raw_request(port, chunked).split()[1] == b"411"
    weird_length = b"POST /api/undo HTTP/1.1\r\n" + host + b"Content-Length: \xb2\r\n\r\n"
    assert raw_request(port, weird_length).split()[1] == b"411"
    short = b"POST /api/undo HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{}"
    assert raw_request(port, short, shutdown_write=True).split()[1] == b"400"
    assert raw_request(port, b"GET / HTTP/x.y\r\n\r\n").split()[1] == b"400"
    assert raw_request(port, b"GARBAGE\r\n\r\n").split()[1] == b"400"
    assert raw_request(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").split()[1] == b"414"
    many_headers = b"GET / HTTP/1.1\r\n" + host + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    assert raw_request(port, many_headers).split()[1] == b"431"

    # still serving, nothing stored, database consistent
    status, reply = api.answer("a", api.state("a")["tasks"][0], "background")
    assert status == 200 and len(store.live_answers()) == 1
    with store._read() as db:  # noqa: SLF001 - the test inspects the file itself
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
