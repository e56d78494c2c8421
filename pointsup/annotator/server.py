"""The labelling web server: standard-library HTTP, one SQLite session behind it.

Routes: ``/`` (the labelling page), ``/boxes`` (the box page of a session from a folder of
photos, API in :mod:`pointsup.annotator.box_api`), ``/progress`` (the progress page), ``/static/*`` (a fixed
list of the tool's own files), ``/image/ID`` (the image of a dataset image id),
``/export.json`` (the point file as a download, built from the session without writing
anything), and the JSON API of :mod:`pointsup.annotator.api`.

Security:

* binds to 127.0.0.1 by default. Without a token, the ``Host`` header must name a loopback
  address or the bound host (this defeats DNS rebinding), and a POST's ``Origin``, when sent,
  must match the host, and a POST that the browser marks as cross-site (``Sec-Fetch-Site``)
  is refused. No GET changes the session: objects are claimed only by ``POST /api/state``;
* with a token (given, or generated when binding to a non-loopback address), every request
  must carry it: ``?token=`` in the URL (the server then sets an HttpOnly cookie and
  redirects to the URL without it), the cookie, or ``Authorization: Bearer TOKEN``;
* images are looked up by id: the file name comes from the dataset, never from the URL, and
  the resolved path (symlinks followed) must lie inside the images folder. They are sent
  without EXIF (:mod:`pointsup.annotator.images`), so browsers show the stored pixel grid;
* request bodies: JSON only (``Content-Type: application/json``, so a foreign page cannot
  post without a CORS preflight, which is refused), at most :data:`MAX_BODY_BYTES`, decoded
  into strict types. Anything malformed gets a 4xx; a failing request rolls its transaction
  back, so the database stays consistent;
* the log escapes what the client sent (no terminal escape sequences reach the terminal), and a
  client that disconnects mid-request costs one log line, not a traceback.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msgspec

from pointsup.annotator import api, box_api
from pointsup.annotator.box_store import validated_boxes_coco
from pointsup.annotator.export import build_export
from pointsup.annotator.images import browser_image_bytes
from pointsup.annotator.progress import compute_progress
from pointsup.annotator.progress_page import render_progress_page
from pointsup.annotator.store import AnnotationStore
from pointsup.points.format import PointFormatError, validate_coco

MAX_BODY_BYTES = 16 * 1024
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
TOKEN_COOKIE = "pointsup_token"
STATIC_DIR = Path(__file__).with_name("static")
#: URL path to (file in STATIC_DIR, content type): nothing else is served from disk but images
STATIC_FILES = {
    "/": ("annotate.html", "text/html; charset=utf-8"),
    # what both pages' scripts share (window.Pointsup), loaded before either
    "/static/common.js": ("common.js", "text/javascript; charset=utf-8"),
    "/static/annotate.js": ("annotate.js", "text/javascript; charset=utf-8"),
    "/static/annotator.css": ("annotator.css", "text/css; charset=utf-8"),
    # the box stage of a session from a folder of photos
    "/boxes": ("boxes.html", "text/html; charset=utf-8"),
    "/static/boxes.js": ("boxes.js", "text/javascript; charset=utf-8"),
    "/static/boxes.css": ("boxes.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}
_IMAGE_PATH = re.compile(r"/image/(\d{1,18})")
#: pending connections the listening socket queues (the standard library's default is 5)
LISTEN_BACKLOG = 256
#: ``Sec-Fetch-Site`` values of requests made by the tool's own pages (or typed by the user)
_SAME_SITE_FETCHES = {"same-origin", "none"}


def escape_for_log(text: str) -> str:
    """``text`` with every non-printable character (escape sequences, CR, NUL...) written as
    a Python escape, so that a log line shows what the client sent and cannot drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname_of(host_header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class AnnotationServer(ThreadingHTTPServer):
    """The HTTP server; request threads share the store (which serialises its writes)."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        store: AnnotationStore,
        images_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.store = store
        self.images_root = os.path.realpath(images_dir)
        self.token = token
        self.log = log
        self.allowed_hostnames = {"localhost", "127.0.0.1", "::1", host}
        self.static = {route: ((STATIC_DIR / name).read_bytes(), ctype) for route, (name, ctype) in STATIC_FILES.items()}
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for a connection that failed outside a request handler (the client
        went away mid-request, a reset), instead of the standard library's traceback."""
        exc = sys.exc_info()[1]
        if self.log is not None:
            self.log(f"{client_address[0]} connection ended: {type(exc).__name__}: {escape_for_log(str(exc))}")

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        """The address of ``path`` (with the token when there is one)."""
        host = str(self.server_address[0])
        if host in ("0.0.0.0", "::"):
            host = socket.getfqdn()
        shown = f"[{host}]" if ":" in host else host
        query = f"?{urlencode({'token': self.token})}" if self.token else ""
        return f"http://{shown}:{self.port}{path}{query}"

    def resolve_image(self, image_id: int) -> tuple[str, str]:
        """``(path, content type)`` of an image; ApiError 404 when unknown, missing or not an
        image, 403 when its path leads outside the images folder."""
        record = self.store.images.get(image_id)
        if record is None:
            raise api.ApiError(404, f"no image with id {image_id}")
        try:
            path = os.path.realpath(os.path.join(self.images_root, record[0]))
        except (ValueError, OSError):
            raise api.ApiError(403, "invalid image path") from None
        if not path.startswith(self.images_root + os.sep):
            raise api.ApiError(403, f"image {image_id} lies outside the images folder")
        content_type = IMAGE_TYPES.get(os.path.splitext(path)[1].lower())
        if content_type is None:
            raise api.ApiError(404, f"image {image_id} is not an image file")
        if not os.path.isfile(path):
            raise api.ApiError(404, f"image file of image {image_id} not found")
        return path, content_type


class _Handler(BaseHTTPRequestHandler):
    server: AnnotationServer
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # never answer in HTTP/0.9 (a reply without status line)
    server_version = "pointsup-annotate"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    # Any method without a do_* handler gets a 405 (http.server would answer 501).
    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._send_json(405, {"error": f"method {self.command} not allowed"}, {"Allow": "GET, POST"})

    # ---- dispatch --------------------------------------------------------------------------

    def _dispatch(self, handler: Callable[[Any], None]) -> None:
        self._body_consumed = False
        try:
            url = urlsplit(self.path)
            self._check_access(url.query)
            handler(url)
        except api.ApiError as exc:
            if self.command != "GET" and not self._body_consumed:
                self.close_connection = True  # an unread body would be taken for the next request
            self._send_json(exc.status, {"error": exc.message, **exc.extra})
        except sqlite3.OperationalError as exc:  # locked by another process, disk full: nothing was written
            self._log(f"database error on {self.command} {escape_for_log(self.path)}: {exc}")
            self.close_connection = True
            self._send_json(503, {"error": f"database unavailable ({exc}); try again"}, {"Retry-After": "1"})
        except (ConnectionError, TimeoutError) as exc:  # the client went away: nothing to answer
            self._log(
                f"{self.address_string()} {self.command} {escape_for_log(self.path)}: connection ended ({type(exc).__name__})"
            )
            self.close_connection = True
        except Exception:  # noqa: BLE001 - a bug must not take the server down
            self._log(f"internal error on {self.command} {escape_for_log(self.path)}\n{traceback.format_exc()}")
            self.close_connection = True
            self._send_json(500, {"error": "internal server error"})

    def _check_access(self, query: str) -> None:
        if self.command == "POST" and self.headers.get("Sec-Fetch-Site", "same-origin") not in _SAME_SITE_FETCHES:
            raise api.ApiError(403, "cross-site request refused")
        token = self.server.token
        if token is None:
            host = self.headers.get("Host", "")
            if _hostname_of(host) not in self.server.allowed_hostnames:
                raise api.ApiError(403, "unexpected Host header (serve with --token for non-local use)")
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != host:
                raise api.ApiError(403, "cross-origin request refused")
            return
        offered = [self._cookie_token(), parse_qs(query).get("token", [None])[0]]
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            offered.append(authorization[7:].strip())
        if not any(t is not None and hmac.compare_digest(t.encode(), token.encode()) for t in offered):
            raise api.ApiError(401, "missing or wrong access token")

    def _cookie_token(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(TOKEN_COOKIE)
        return None if morsel is None else morsel.value

    # ---- GET -------------------------------------------------------------------------------

    def _get(self, url: Any) -> None:
        query = parse_qs(url.query)
        if "token" in query and url.path in ("/", "/progress", "/boxes"):
            self._redirect_without_token(url.path, query)
        elif url.path in self.server.static:
            body, content_type = self.server.static[url.path]
            self._send(200, body, content_type, {"Cache-Control": "no-cache"})
        elif url.path == "/progress":
            store = self.server.store
            report = compute_progress(store)
            _, export = build_export(store)
            _, partial = build_export(store, partial=True)
            page = render_progress_page(report, export, partial)
            self._send(200, page.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
        elif url.path == "/api/progress":
            self._send_json(200, compute_progress(self.server.store).to_dict())
        elif url.path == "/api/boxes/state":
            self._send_json(200, box_api.read_state(self.server.store, query))
        elif url.path == "/api/state":
            names = query.get("annotator")
            if not names or len(names) != 1:
                raise api.ApiError(400, "give one annotator: /api/state?annotator=NAME")
            self._send_json(200, api.state(self.server.store, api.annotator_name(names[0]), claim=False))
        elif url.path == "/api/review":
            names, positions = query.get("annotator"), query.get("position", [])
            if not names or len(names) != 1 or len(positions) > 1 or not all(p.isdigit() and len(p) < 16 for p in positions):
                raise api.ApiError(400, "give one annotator and at most one position: /api/review?annotator=NAME&position=P")
            position = int(positions[0]) if positions else None
            self._send_json(200, api.review(self.server.store, api.annotator_name(names[0]), position))
        elif url.path == "/export.json":
            self._send_export(query)
        elif match := _IMAGE_PATH.fullmatch(url.path):
            path, content_type = self.server.resolve_image(int(match.group(1)))
            self._send(200, browser_image_bytes(path), content_type, {"Cache-Control": "private, max-age=86400"})
        else:
            raise api.ApiError(404, "not found")

    def _send_export(self, query: dict[str, list[str]]) -> None:
        """The point file as a download (``?partial=1``: the partial export; ``?annotator=NAME``:
        one annotator's answers; ``?boxes=1``: the boxes of a session from a folder, no points).
        Reads the session only."""
        partial = query.get("partial", ["0"]) == ["1"]
        names = query.get("annotator")
        annotator = api.annotator_name(names[0]) if names else None
        stem = Path(self.server.store.settings.dataset_path).stem
        if query.get("boxes") == ["1"]:
            box_api.box_stage(self.server.store)  # 404 without one
            name = f"{stem}.boxes.json"
            try:  # what `annotate export --boxes` writes, checked as it is
                body = msgspec.json.encode(validated_boxes_coco(self.server.store, name))
            except PointFormatError as exc:
                raise api.ApiError(500, f"the boxes do not make a valid COCO file: {exc.one_line()}") from None
        else:
            try:
                document, _ = build_export(self.server.store, partial=partial, annotator=annotator)
            except ValueError as exc:
                raise api.ApiError(404, str(exc)) from None
            name = f"{stem}.points{'.partial' if partial else ''}.json"
            body = msgspec.json.encode(validate_coco(document, name).to_coco())  # what `annotate export` writes
        disposition = f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", name)}"'
        self._send(200, body, "application/json", {"Cache-Control": "no-store", "Content-Disposition": disposition})

    def _redirect_without_token(self, path: str, query: dict[str, list[str]]) -> None:
        rest = urlencode([(k, v) for k, values in query.items() if k != "token" for v in values])
        cookie = f"{TOKEN_COOKIE}={self.server.token}; HttpOnly; SameSite=Lax; Path=/"
        self._send(303, b"", "text/plain", {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": cookie})

    # ---- POST ------------------------------------------------------------------------------

    def _post(self, url: Any) -> None:
        routes: dict[str, tuple[type[msgspec.Struct], Callable[[AnnotationStore, Any], dict[str, Any]]]] = {
            "/api/answer": (api.AnswerRequest, api.answer),
            "/api/undo": (api.UndoRequest, api.undo),
            "/api/state": (api.StateRequest, api.claim_state),
            "/api/gold": (api.GoldRequest, api.gold_answer),
            "/api/relabel": (api.RelabelRequest, api.relabel),
            **box_api.POST_ROUTES,
        }
        if url.path not in routes:
            raise api.ApiError(404, "not found")
        kind, action = routes[url.path]
        body = self._read_json_body()
        self._send_json(200, action(self.server.store, api.decode_request(body, kind)))

    def _read_json_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise api.ApiError(411, "send the body with a Content-Length")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None or not (raw_length.isascii() and raw_length.isdigit()):
            raise api.ApiError(411, "Content-Length required")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            raise api.ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        self._body_consumed = len(body) == length
        if not self._body_consumed:
            raise api.ApiError(400, "request body shorter than its Content-Length")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise api.ApiError(415, "the body must be application/json")
        return body

    # ---- responses -------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, msgspec.json.encode(payload), "application/json", {"Cache-Control": "no-store", **(headers or {})})

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**_SECURITY_HEADERS, **headers}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, HTTPStatus):
            code = code.value
        if str(code).isdigit() and int(code) >= 400:
            self.log_message('"%s" %s', self.requestline, str(code))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        self._log(f"{self.address_string()} {escape_for_log(format % args)}")

    def _log(self, message: str) -> None:
        if self.server.log is not None:
            self.server.log(message)


@contextlib.contextmanager
def serving_in_background(server: AnnotationServer) -> Iterator[AnnotationServer]:
    """Serve from a background thread for the duration of the block (tests, screenshots);
    the server is closed afterwards, the store is not."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_until_stopped(server: AnnotationServer) -> None:
    """Serve until SIGINT or SIGTERM, then close the server and the store."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        server.store.close()


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
