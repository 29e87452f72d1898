"""A real browser: headless Chromium opens a page on another loopback origin whose script tries
to spend the budget, switch the mode and read the stats of hybrid on 127.0.0.1.

With the default settings nothing happens (the fake cloud is not called, the mode stays
``auto``, the page reads nothing); with the page's origin in ``server.allowed_origins`` the same
page gets through, which shows the browser really reached hybrid.  Skipped where Chromium is not
installed (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_cloud import FakeCloud

CHROMIUM = Path("/usr/bin/chromium")
# Far above what the page needs: only a page that never reports reaches it.
PAGE_DONE_BOUND_S = 120.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

# Each attempt a page can make; the page reports [name, response type, status or error].
SCRIPT = """
const hybrid = HYBRID;
const chat = JSON.stringify(
  {model: "cloud", messages: [{role: "user", content: "Spend my budget"}]});
const messages = JSON.stringify(
  {model: "cloud", max_tokens: 16, messages: [{role: "user", content: "Spend my budget"}]});
const json = {"Content-Type": "application/json"};

async function attempt(name, path, init) {
  try {
    const response = await fetch(hybrid + path, init);
    return [name, response.type, response.status];
  } catch (error) {
    return [name, "error", String(error)];
  }
}

function formPost() {
  // <form enctype="text/plain">: the body is the JSON {"mode": "cloud-only", "x": "="}.
  return new Promise((resolve) => {
    const sink = document.getElementById("sink");
    sink.onload = () => resolve(["mode form", "navigation", 0]);
    document.getElementById("form").submit();
    setTimeout(() => resolve(["mode form", "timeout", 0]), 10000);
  });
}

async function run() {
  const multipart = new FormData();
  multipart.append("payload", chat);
  const results = [
    await attempt("chat text", "/v1/chat/completions", {method: "POST", body: chat}),
    await attempt("chat no-cors", "/v1/chat/completions",
                  {method: "POST", mode: "no-cors", body: chat}),
    await attempt("completions multipart", "/v1/completions",
                  {method: "POST", mode: "no-cors", body: multipart}),
    await attempt("messages urlencoded", "/v1/messages",
                  {method: "POST", mode: "no-cors", body: new URLSearchParams({[messages]: ""})}),
    await attempt("messages blob", "/v1/messages",
                  {method: "POST", mode: "no-cors", body: new Blob([messages])}),
    await attempt("mode text", "/v1/hybrid/mode",
                  {method: "POST", mode: "no-cors", body: '{"mode": "cloud-only"}'}),
    await formPost(),
    await attempt("chat json", "/v1/chat/completions",
                  {method: "POST", headers: json, body: chat}),
    await attempt("mode json", "/v1/hybrid/mode",
                  {method: "POST", headers: json, body: '{"mode": "local-only"}'}),
    await attempt("stats", "/v1/hybrid/stats", {}),
  ];
  await fetch("/done", {method: "POST", body: JSON.stringify(results)});
}
run();
"""

PAGE = """<!doctype html>
<html><body>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="post" enctype="text/plain" target="sink" action="{hybrid}/v1/hybrid/mode">
<input name='{{"mode": "cloud-only", "x": "' value='"}}'>
</form>
<script>{script}</script>
</body></html>
"""


class PageServer:
    """Serves the attacking page on its own loopback port and collects what it reports."""

    def __init__(self) -> None:
        self.hybrid = ""
        self.results: list[list[Any]] = []
        self.done = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                script = SCRIPT.replace("HYBRID", json.dumps(page.hybrid))
                body = PAGE.format(hybrid=page.hybrid, script=script).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                page.results = json.loads(self.rfile.read(length))
                self.send_response(204)
                self.end_headers()
                page.done.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def page() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def open_in_chromium(url: str, profile: Path, log: Path, done: threading.Event) -> None:
    """Open ``url`` in a fresh headless Chromium until the page reports back."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    with log.open("wb") as output:
        browser = subprocess.Popen(
            [str(CHROMIUM), *flags, url],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its helpers end with it
        )
        try:
            reported = done.wait(PAGE_DONE_BOUND_S)
        finally:
            os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)
                browser.wait()
    assert reported, f"the page never reported; chromium said:\n{log.read_text()[-3000:]}"


def mode_of(base_url: str) -> str:
    return str(httpx.get(f"{base_url}/v1/hybrid/stats").json()["mode"])


def test_a_page_on_another_origin_gets_nothing_done(
    serve: Callable[..., str], page: PageServer, fake: FakeCloud, tmp_path: Path
) -> None:
    page.hybrid = serve()

    open_in_chromium(page.origin, tmp_path / "profile", tmp_path / "chromium.log", page.done)

    results = {name: (kind, status) for name, kind, status in page.results}
    assert fake.requests == []
    assert mode_of(page.hybrid) == "auto"
    # The page could read none of the answers, the stats least of all.
    assert results["stats"][0] == "error"
    assert all(kind in ("error", "opaque", "navigation") for kind, _ in results.values())


def test_the_same_page_gets_through_once_its_origin_is_allowed(
    serve: Callable[..., str], page: PageServer, fake: FakeCloud, tmp_path: Path
) -> None:
    page.hybrid = serve(**{"server.allowed_origins": [page.origin]})

    open_in_chromium(page.origin, tmp_path / "profile", tmp_path / "chromium.log", page.done)

    results = {name: (kind, status) for name, kind, status in page.results}
    assert results["stats"] == ("cors", 200)
    assert results["chat json"] == ("cors", 200)
    assert results["chat text"] == ("cors", 415)  # allowed pages still send JSON only
    assert len(fake.requests) == 1
    assert mode_of(page.hybrid) == "local-only"
