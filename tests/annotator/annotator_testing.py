"""Helpers shared by the annotator tests: an HTTP client for the server's API and answer keys."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pointsup.annotator.store import AnnotationStore

LABEL_NAMES = {1: "object", 0: "background", -1: "unsure"}


class Api:
    """A minimal client of the labelling server (a new connection per request)."""

    def __init__(self, port: int, token: str | None = None, host: str = "127.0.0.1"):
        self.port = port
        self.token = token
        self.host = host

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, http.client.HTTPMessage]:
        """``(status, JSON payload or raw bytes, headers)``."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        all_headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        all_headers.update(headers or {})
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if payload and response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(payload), response.headers
        return response.status, payload, response.headers

    def post(self, path: str, obj: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, payload, _ = self.request(
            "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}
        )
        return status, payload

    def state(self, annotator: str) -> dict[str, Any]:
        """The annotator's state, claiming objects as the page does (POST)."""
        status, payload = self.post("/api/state", {"annotator": annotator})
        assert status == 200, payload
        return payload

    def peek(self, annotator: str) -> dict[str, Any]:
        """The annotator's state without claiming anything (GET)."""
        status, payload, _ = self.request("GET", f"/api/state?annotator={quote(annotator)}")
        assert status == 200, payload
        return payload

    def answer(self, annotator: str, task: dict[str, Any], label: str, response_ms: float | None = 500.0) -> tuple[int, Any]:
        return self.post(
            "/api/answer",
            {
                "annotator": annotator,
                "position": task["position"],
                "point_index": task["point_index"],
                "label": label,
                "response_ms": response_ms,
            },
        )

    def undo(self, annotator: str) -> dict[str, Any]:
        status, payload = self.post("/api/undo", {"annotator": annotator})
        assert status == 200, payload
        return payload


def true_labels(store: AnnotationStore) -> dict[tuple[int, int], str]:
    """``(position, point_index)`` to the label the mask gives ("object" or "background")."""
    return {
        (o.position, k): LABEL_NAMES[int(v)]
        for o in store.objects()
        if o.mask_values is not None
        for k, v in enumerate(o.mask_values)
    }


def answer_all(api: Api, annotator: str, labels: dict[tuple[int, int], str], limit: int | None = None) -> list[tuple[int, int]]:
    """Answer the annotator's points with ``labels`` until none is left (or ``limit``
    answers); returns the answered ``(position, point_index)`` in order."""
    answered: list[tuple[int, int]] = []
    tasks = api.state(annotator)["tasks"]
    while tasks and (limit is None or len(answered) < limit):
        key = (tasks[0]["position"], tasks[0]["point_index"])
        status, reply = api.answer(annotator, tasks[0], labels[key])
        assert status == 200, reply
        answered.append(key)
        tasks = reply["tasks"]
    return answered


@dataclass
class ServerProcess:
    """A ``pointsup annotate serve`` subprocess and the URL it printed."""

    process: subprocess.Popen[str]
    url: str
    #: what it printed up to the URL
    printed: str = ""

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_server(dataset: Path, images: Path, *args: str) -> ServerProcess:
    """Start ``python -m pointsup annotate serve`` on a free port (extra ``args`` appended)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pointsup",
            "annotate",
            "serve",
            str(dataset),
            "--images",
            str(images),
            "--port",
            "0",
            "--quiet",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    printed = []
    for line in process.stdout:
        printed.append(line)
        if match := re.search(r"labelling page: (http://\S+)", line):
            return ServerProcess(process, match.group(1), "".join(printed))
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read() if process.stderr else ''}")


#: the browser tests' window unless a test says otherwise
DEFAULT_VIEWPORT = {"width": 1100, "height": 760}


def open_page(
    browser: Any, url: str, viewport: dict[str, int] | None = None, first_visit: bool = False, **options: Any
) -> tuple[Any, list[str]]:
    """A page at ``url`` in a fresh browser context, and the list its script errors and console
    errors are collected in. Unless ``first_visit``, the first-use instructions count as read."""
    context = browser.new_context(viewport=viewport or DEFAULT_VIEWPORT, **options)
    if not first_visit:
        context.add_init_script("localStorage.setItem('pointsup-instructions-read', '1')")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(url)
    return page, problems
