"""A fake Hugging Face hub on a loopback port, speaking the hub's API for what ``hybrid pull`` uses.

Routes, answered the way huggingface.co answers them:

* ``GET /api/models/{org}/{name}`` and ``.../revision/{rev}``: the commit (``sha``) and the
  ``siblings``; with ``?blobs=true``, each one's ``size`` and, for LFS files, ``lfs.sha256``.
* ``HEAD`` / ``GET /{org}/{name}/resolve/{rev}/{path}``: for an LFS file, ``302 Found`` to a
  CDN-like path on the same server, carrying ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256),
  ``X-Linked-Size`` and ``ETag``; for a small git file, ``200`` with its content and its git
  blob id as ``ETag``.
* ``GET`` / ``HEAD /cdn/{sha256}``: the bytes, with ``Accept-Ranges: bytes``, ``ETag`` and
  ``Range`` requests (``206`` with ``Content-Range``; ``416`` past the end).
* Errors with the hub's ``X-Error-Code``: an unknown repository is ``401 RepoNotFound`` without
  a token and ``404 RepoNotFound`` with one; an unknown revision ``404 RevisionNotFound``; an
  unknown file ``404 EntryNotFound``; a token the hub does not know ``401``; a gated repository
  without an accepted token ``403 GatedRepo``.

Faults: :meth:`FakeHub.cut_next` makes the next CDN bodies of a file stop after N bytes and close
the socket (a cut connection); :meth:`FakeHub.corrupt` serves a file with one byte flipped while
publishing the real sha256; :attr:`FakeHub.ignore_range` answers every Range request with the
whole file; :attr:`FakeHub.unavailable` answers the next N API requests ``503``.

A file's content is bytes or a path (served from disk, so the embedded 253 MB model needs no
copy in memory).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, quote, unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class HubFile:
    """A file of a fake repository.

    Attributes:
        content: Its bytes, or the file holding them.
        lfs: Stored in LFS (every GGUF is), so served through the CDN with a sha256.
        sha256: Its sha256, when known in advance (saves hashing a large file).
    """

    content: bytes | Path
    lfs: bool = True
    sha256: str | None = None

    @property
    def size(self) -> int:
        if isinstance(self.content, bytes):
            return len(self.content)
        return self.content.stat().st_size

    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        if isinstance(self.content, bytes):
            return hashlib.sha256(self.content).hexdigest()
        digest = hashlib.sha256()
        with self.content.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def git_blob_id(self) -> str:
        data = self.read(0, self.size)
        return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()

    def read(self, start: int, end: int) -> bytes:
        if isinstance(self.content, bytes):
            return self.content[start:end]
        with self.content.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def blocks(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            block = self.read(position, min(end, position + _BLOCK))
            if not block:
                return
            yield block
            position += len(block)


@dataclass
class HubRepo:
    """A fake repository: one commit, its files, and whether it is gated."""

    files: dict[str, HubFile]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    revisions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SeenRequest:
    """A request the fake hub received: method, path with query, and its Authorization."""

    method: str
    path: str
    authorization: str | None


class FakeHub:
    """The fake hub; use it in ``with`` (it serves from a thread).

    Args:
        tokens: Tokens the hub accepts (a gated repository opens to these).

    Attributes:
        repos: Repository id to :class:`HubRepo`; add with :meth:`add`.
        seen: Every request received, in order.
        ignore_range: Answer Range requests with the whole file (200).
        unavailable: Answer this many of the next API requests with 503.
    """

    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self.tokens = set(tokens)
        self.repos: dict[str, HubRepo] = {}
        self.seen: list[SeenRequest] = []
        self.ignore_range = False
        self.unavailable = 0
        self._cuts: dict[str, list[int]] = {}
        self._corrupt: set[str] = set()
        self._digests: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The hub's base URL (what ``HF_ENDPOINT`` is set to)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, files: Mapping[str, HubFile], **options: object) -> HubRepo:
        """Add a repository; ``options`` are :class:`HubRepo`'s (``commit``, ``gated``)."""
        entry = HubRepo(dict(files), **options)  # type: ignore[arg-type]
        self.repos[repo] = entry
        for path, hub_file in files.items():
            self._digests[(repo, path)] = hub_file.digest()
        return entry

    def sha256(self, repo: str, path: str) -> str:
        """The sha256 the hub publishes for a file."""
        return self._digests[(repo, path)]

    def cut_next(self, sha256: str, *after_bytes: int) -> None:
        """Cut the next CDN bodies of a blob: the first after ``after_bytes[0]`` bytes, ..."""
        with self._lock:
            self._cuts.setdefault(sha256, []).extend(after_bytes)

    def corrupt(self, sha256: str) -> None:
        """Serve that blob with its first byte flipped, still publishing the real sha256."""
        self._corrupt.add(sha256)

    def blob_requests(self) -> list[SeenRequest]:
        """The CDN requests received."""
        return [r for r in self.seen if r.path.startswith("/cdn/")]

    def _take_cut(self, sha256: str) -> int | None:
        with self._lock:
            queue = self._cuts.get(sha256)
            return queue.pop(0) if queue else None

    def _find_blob(self, sha256: str) -> HubFile | None:
        for (repo, path), digest in self._digests.items():
            if digest == sha256:
                return self.repos[repo].files[path]
        return None

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    """A threaded server that does not print the clients that hang up (the tests cut some)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None  # quiet

        def do_GET(self) -> None:
            self._route(body=True)

        def do_HEAD(self) -> None:
            self._route(body=False)

        # -- routing -------------------------------------------------------------------------

        def _route(self, *, body: bool) -> None:
            auth = self.headers.get("authorization")
            hub.seen.append(SeenRequest(self.command, self.path, auth))
            url = urlsplit(self.path)
            path = unquote(url.path)
            if path.startswith("/cdn/"):
                self._blob(path.removeprefix("/cdn/"), body=body)
                return
            token = auth.removeprefix("Bearer ").strip() if auth else None
            if token is not None and token not in hub.tokens:
                self._error(401, None, "Invalid credentials in Authorization header")
                return
            if path.startswith("/api/models/"):
                if hub.unavailable > 0:
                    hub.unavailable -= 1
                    self._error(503, None, "Service Unavailable")
                    return
                self._listing(path.removeprefix("/api/models/"), parse_qs(url.query), token)
                return
            parts = path.lstrip("/").split("/", 4)
            if len(parts) == 5 and parts[2] == "resolve":
                repo = f"{parts[0]}/{parts[1]}"
                self._resolve(repo, parts[3], parts[4], token, body=body)
                return
            self._error(404, None, "Not Found")

        def _repo(self, repo: str, token: str | None) -> HubRepo | None:
            entry = hub.repos.get(repo)
            if entry is None:
                # The real hub does not say whether a repository exists to an anonymous caller.
                status = 404 if token is not None else 401
                self._error(status, "RepoNotFound", "Repository not found")
                return None
            if entry.gated and token is None:
                self._error(403, "GatedRepo", "Access to this model is restricted")
                return None
            return entry

        def _commit(self, entry: HubRepo, revision: str) -> str | None:
            if revision in ("main", entry.commit):
                return entry.commit
            commit = entry.revisions.get(revision)
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return commit

        def _listing(self, rest: str, query: Mapping[str, list[str]], token: str | None) -> None:
            repo, _, revision = rest.partition("/revision/")
            entry = self._repo(repo, token)
            if entry is None:
                return
            commit = self._commit(entry, unquote(revision) if revision else "main")
            if commit is None:
                return
            blobs = query.get("blobs", ["false"])[0] == "true"
            siblings = []
            for path, hub_file in entry.files.items():
                item: dict[str, object] = {"rfilename": path}
                if blobs:
                    item["size"] = hub_file.size
                    item["blobId"] = hub_file.git_blob_id() if not hub_file.lfs else "f" * 40
                    if hub_file.lfs:
                        item["lfs"] = {
                            "sha256": hub.sha256(repo, path),
                            "size": hub_file.size,
                            "pointerSize": 134,
                        }
                siblings.append(item)
            payload = {
                "_id": "0" * 24,
                "id": repo,
                "modelId": repo,
                "sha": commit,
                "private": False,
                "gated": "manual" if entry.gated else False,
                "disabled": False,
                "tags": ["gguf"],
                "siblings": siblings,
            }
            self._send(200, json.dumps(payload).encode(), {"content-type": "application/json"})

        def _resolve(
            self, repo: str, revision: str, path: str, token: str | None, *, body: bool
        ) -> None:
            entry = self._repo(repo, token)
            if entry is None:
                return
            commit = self._commit(entry, revision)
            if commit is None:
                return
            hub_file = entry.files.get(path)
            if hub_file is None:
                self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
                return
            headers = {"x-repo-commit": commit}
            if not hub_file.lfs:
                headers["etag"] = f'"{hub_file.git_blob_id()}"'
                data = hub_file.read(0, hub_file.size)
                self._send(200, data if body else b"", headers, length=len(data))
                return
            sha256 = hub.sha256(repo, path)
            location = f"{hub.url}/cdn/{sha256}?repo={quote(repo)}"
            note = f"Found. Redirecting to {location}".encode()
            headers |= {
                "x-linked-etag": f'"{sha256}"',
                "x-linked-size": str(hub_file.size),
                "etag": f'"{hashlib.sha1(sha256.encode()).hexdigest()}"',
                "location": location,
            }
            self._send(302, note if body else b"", headers, length=len(note))

        def _blob(self, rest: str, *, body: bool) -> None:
            sha256 = rest.split("?", 1)[0]
            hub_file = hub._find_blob(sha256)
            if hub_file is None:
                self._error(404, None, "NoSuchKey")
                return
            size = hub_file.size
            start, end, status = 0, size, 200
            wanted = _RANGE.match(self.headers.get("range", ""))
            if wanted is not None and not hub.ignore_range:
                start = int(wanted.group(1))
                end = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
                if start >= size:
                    self._send(416, b"", {"content-range": f"bytes */{size}"})
                    return
                status = 206
            headers = {
                "accept-ranges": "bytes",
                "etag": f'"{sha256}"',
                "content-type": "application/octet-stream",
            }
            if status == 206:
                headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
            self._head(status, headers, end - start)
            if not body:
                return
            cut = hub._take_cut(sha256)
            limit = end - start if cut is None else min(cut, end - start)
            sent = 0
            flip = sha256 in hub._corrupt
            for block in hub_file.blocks(start, end):
                piece = block[: limit - sent]
                if flip and start + sent == 0 and piece:
                    piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
                self.wfile.write(piece)
                sent += len(piece)
                if sent >= limit:
                    break
            if cut is not None:
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        # -- framing -------------------------------------------------------------------------

        def _head(self, status: int, headers: Mapping[str, str], length: int) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(length))
            self.end_headers()

        def _send(
            self, status: int, data: bytes, headers: Mapping[str, str], *, length: int | None = None
        ) -> None:
            self._head(status, headers, len(data) if length is None else length)
            if data:
                self.wfile.write(data)

        def _error(self, status: int, code: str | None, message: str) -> None:
            headers = {"content-type": "application/json", "x-error-message": message}
            if code is not None:
                headers["x-error-code"] = code
            data = b"" if self.command == "HEAD" else json.dumps({"error": message}).encode()
            self._send(status, data, headers, length=len(json.dumps({"error": message})))

    return Handler
