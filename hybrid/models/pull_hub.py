"""The Hugging Face hub's HTTP API, as ``hybrid pull`` uses it, over httpx2.

Three requests, the ones ``huggingface_hub`` makes:

* ``GET /api/models/{repo}[/revision/{rev}]?blobs=true``: the commit and every file, with its
  size and, for LFS files, the sha256 of its content;
* ``HEAD /{repo}/resolve/{commit}/{path}``: answered ``302`` to a CDN for LFS files, with
  ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``X-Repo-Commit``;
* ``GET <cdn url>`` with ``Range: bytes=N-`` to resume a download.

The environment configures it as it configures ``huggingface_hub``: ``HF_ENDPOINT`` (a mirror or
a private hub), ``HF_TOKEN`` (else the token file ``huggingface-cli login`` writes), and the
proxies and CA bundle httpx2 reads itself (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
``NO_PROXY``, ``SSL_CERT_FILE``).  The token goes only to the endpoint's own origin, never to
the CDN a download is redirected to.  HTTP errors become :class:`ModelDownloadError` messages
that name the repository and say what to do; httpx2's exceptions never leave this module.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2

from hybrid import __version__
from hybrid.errors import ConfigError, ModelDownloadError
from hybrid.models.pull_cache import hf_home, hub_cache_dir
from hybrid.models.pull_spec import RepoFile

DEFAULT_ENDPOINT = "https://huggingface.co"
_MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ConnectionCut(Exception):
    """The connection failed or broke mid-transfer; the caller may resume.  Internal."""


class HubUnavailable(Exception):
    """The hub answered 5xx or could not be reached; worth another try.  Internal."""


@dataclass(frozen=True)
class HubConfig:
    """Where the hub is, who asks, and where its files are cached.

    Attributes:
        endpoint: The hub's base URL, without a trailing slash.
        token: The access token, when one is set.
        token_source: Where the token came from (``HF_TOKEN`` or the token file), for messages.
        cache: The hub cache folder.
    """

    endpoint: str
    token: str | None
    token_source: str | None
    cache: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HubConfig:
        """Read ``HF_ENDPOINT``, ``HF_TOKEN`` (else ``HF_TOKEN_PATH`` / ``HF_HOME/token``)
        and the cache folder from an environment.

        Raises:
            ConfigError: ``HF_ENDPOINT`` is not an http(s) URL.
        """
        endpoint = (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"HF_ENDPOINT={endpoint!r} is not a URL: set it to the hub's address "
                f"(e.g. {DEFAULT_ENDPOINT}) or unset it"
            )
        token = (environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip()
        source: str | None = "HF_TOKEN" if token else None
        if not token:
            token_file = Path(environ.get("HF_TOKEN_PATH") or hf_home(environ) / "token")
            with contextlib.suppress(OSError, UnicodeDecodeError):
                token = token_file.expanduser().read_text(encoding="utf-8").strip()
                source = f"the token file {token_file}"
        return cls(endpoint, token or None, source if token else None, hub_cache_dir(environ))


@dataclass(frozen=True)
class RepoListing:
    """A repository at one commit.

    Attributes:
        repo: The repository id.
        commit: The commit the revision resolved to.
        files: Every file, with sizes and LFS checksums where the hub lists them.
    """

    repo: str
    commit: str
    files: tuple[RepoFile, ...]


@dataclass(frozen=True)
class FileLocation:
    """Where one file's bytes are, and what they must hash to.

    Attributes:
        url: The URL to GET (the CDN's, after the hub's redirect).
        etag: The sha256 of the content (LFS) or the git blob id; names the cache blob.
        size: The content's size in bytes, when the hub says.
    """

    url: str
    etag: str
    size: int | None


@dataclass(frozen=True)
class Body:
    """A response body being received.

    Attributes:
        offset: The byte of the file the body starts at (the Range start, or 0 when the
            server sent the whole file).
        chunks: The body, piece by piece; raises :class:`ConnectionCut` if the connection
            breaks.
    """

    offset: int
    chunks: Iterator[bytes]


class Hub:
    """A client of one hub.  Close it (or use it in ``with``) when done.

    Args:
        config: Endpoint, token and cache.
        transport: An httpx2 transport to use instead of the network (tests); httpx2 then
            ignores the environment's proxies.
        read_timeout_s: How long a silent connection is waited on before it counts as cut.

    Raises:
        ConfigError: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` names no readable certificates.
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        transport: httpx2.BaseTransport | None = None,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.config = config
        self._origin = httpx2.URL(config.endpoint).origin
        try:
            self._client = httpx2.Client(
                transport=transport,
                trust_env=True,
                follow_redirects=False,
                timeout=httpx2.Timeout(read_timeout_s, connect=10.0),
                headers={"user-agent": f"hybrid/{__version__}"},
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"the CA certificates named by SSL_CERT_FILE or SSL_CERT_DIR could not be "
                f"loaded ({exc}); point the variable at a readable PEM bundle, or unset it"
            ) from exc

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def listing(self, repo: str, revision: str) -> RepoListing:
        """List a repository's files at a revision, with sizes and LFS checksums.

        Raises:
            ModelDownloadError: The repository or revision does not exist, the token is
                refused, or the answer is not the hub's JSON.
            HubUnavailable: A 5xx, or the hub cannot be reached.
        """
        path = f"/api/models/{repo}"
        if revision != "main":
            path += f"/revision/{quote(revision, safe='')}"
        url = f"{self.config.endpoint}{path}"
        try:
            response = self._client.get(
                url, params={"blobs": "true"}, headers=self._auth(httpx2.URL(url))
            )
        except httpx2.TransportError as exc:
            raise HubUnavailable(self._unreachable(exc)) from exc
        self._check(response, repo, revision=revision)
        try:
            data = response.json()
            commit = str(data["sha"])
            files = tuple(_repo_file(item) for item in data.get("siblings") or [])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelDownloadError(
                f"{self.config.endpoint} did not answer the listing of {repo} as the hub does "
                f"({exc}); check HF_ENDPOINT"
            ) from exc
        return RepoListing(repo, commit, files)

    def locate(self, repo: str, commit: str, path: str) -> FileLocation:
        """Ask the hub where a file's bytes are (``HEAD .../resolve/...``).

        Raises:
            ModelDownloadError: The file or repository is not there, or the token is refused.
            HubUnavailable: A 5xx, or the hub cannot be reached.
        """
        url = f"{self.config.endpoint}/{repo}/resolve/{commit}/{quote(path)}"
        for _ in range(_MAX_REDIRECTS):
            try:
                response = self._client.head(url, headers=self._auth(httpx2.URL(url)))
            except httpx2.TransportError as exc:
                raise HubUnavailable(self._unreachable(exc)) from exc
            headers = response.headers
            etag = _unquote(headers.get("x-linked-etag") or headers.get("etag") or "")
            size = _int(headers.get("x-linked-size") or headers.get("content-length"))
            if response.is_redirect:
                location = str(response.url.join(headers.get("location", "")))
                if headers.get("x-linked-etag"):
                    return FileLocation(location, etag, size)
                url = location  # a renamed repository: ask again where it moved
                continue
            self._check(response, repo, path=path)
            if not etag:
                raise ModelDownloadError(
                    f"{self.config.endpoint} gave no ETag for {repo}/{path}; check HF_ENDPOINT"
                )
            return FileLocation(url, etag, size)
        raise ModelDownloadError(f"too many redirects resolving {repo}/{path}")

    @contextlib.contextmanager
    def body(self, url: str, start: int) -> Iterator[Body]:
        """GET a file from byte ``start`` on, following the CDN's redirects.

        Raises:
            ConnectionCut: The connection failed before or during the body, or the server
                answered 5xx.
            ModelDownloadError: The server refused the request (another 4xx).
        """
        headers = {"range": f"bytes={start}-"} if start else {}
        with contextlib.ExitStack() as stack:
            for _ in range(_MAX_REDIRECTS):
                request_headers = {**headers, **self._auth(httpx2.URL(url))}
                try:
                    response = stack.enter_context(
                        self._client.stream("GET", url, headers=request_headers)
                    )
                except httpx2.TransportError as exc:
                    raise ConnectionCut(str(exc) or type(exc).__name__) from exc
                if not response.is_redirect:
                    break
                url = str(response.url.join(response.headers.get("location", "")))
                response.close()
            else:
                raise ModelDownloadError(f"too many redirects downloading {url}")
            if response.status_code >= 500:
                raise ConnectionCut(f"the server answered {response.status_code}")
            if response.status_code == 416:
                yield Body(start, iter(()))
                return
            if response.status_code >= 400:
                raise ModelDownloadError(
                    f"the download server refused {url} ({response.status_code}); "
                    "run the command again, and check HF_TOKEN if it persists"
                )
            offset = 0
            if response.status_code == 206:
                match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                offset = int(match.group(1)) if match else 0
            yield Body(offset, _chunks(response))

    def _auth(self, url: httpx2.URL) -> dict[str, str]:
        # The token is for the hub only: a CDN (another origin) never sees it.
        if self.config.token is None or url.origin != self._origin:
            return {}
        return {"authorization": f"Bearer {self.config.token}"}

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"cannot reach {self.config.endpoint} ({exc or type(exc).__name__}); check the "
            "network connection, HF_ENDPOINT, and the proxy variables (HTTPS_PROXY)"
        )

    def _check(
        self,
        response: httpx2.Response,
        repo: str,
        *,
        revision: str | None = None,
        path: str | None = None,
    ) -> None:
        status = response.status_code
        if status < 400:
            return
        if status >= 500:
            raise HubUnavailable(f"{self.config.endpoint} answered {status} for {repo}")
        code = response.headers.get("x-error-code", "")
        page = f"{self.config.endpoint}/{repo}"
        token = self.config.token_source
        if status == 401 and token is not None:
            raise ModelDownloadError(
                f"{self.config.endpoint} refused the token from {token} (401) for {repo}: set "
                f"HF_TOKEN to a valid access token ({DEFAULT_ENDPOINT}/settings/tokens), or "
                "unset it for public repositories"
            )
        if status == 403 or code == "GatedRepo":
            who = f"the token from {token}" if token else "no token (set HF_TOKEN)"
            raise ModelDownloadError(
                f"{repo} is gated or private and {who} has no access ({status}): accept its "
                f"terms at {page} and set HF_TOKEN to a read token of that account"
            )
        if status == 404 and code == "RevisionNotFound" and revision is not None:
            raise ModelDownloadError(
                f"{repo} has no revision {revision!r}: name a branch, tag or commit that "
                f"exists (see {page}/tree/main), or leave --revision out"
            )
        if status == 404 and code == "EntryNotFound" and path is not None:
            raise ModelDownloadError(
                f"{repo} has no file {path}: run `hybrid pull {repo}` to list its GGUF files"
            )
        if status in (401, 404):
            hint = "" if token else "; if it is private, set HF_TOKEN"
            raise ModelDownloadError(
                f"repository {repo} was not found on {self.config.endpoint} ({status}): check "
                f"the name (org/name, as in {DEFAULT_ENDPOINT}/org/name){hint}"
            )
        if status == 429:
            raise ModelDownloadError(
                f"{self.config.endpoint} is rate-limiting requests (429) for {repo}: wait a "
                "minute and run the command again (a token in HF_TOKEN raises the limit)"
            )
        raise ModelDownloadError(
            f"{self.config.endpoint} refused the request for {repo} ({status}): check the "
            "repository name and HF_ENDPOINT"
        )


def _chunks(response: httpx2.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except (httpx2.TransportError, httpx2.StreamError) as exc:
        raise ConnectionCut(str(exc) or type(exc).__name__) from exc


def _repo_file(item: Mapping[str, object]) -> RepoFile:
    lfs = item.get("lfs")
    sha256: str | None = None
    size = _int(item.get("size"))
    if isinstance(lfs, Mapping):
        oid = lfs.get("sha256") or lfs.get("oid")
        sha256 = str(oid).removeprefix("sha256:") if oid else None
        size = _int(lfs.get("size")) or size
    return RepoFile(str(item["rfilename"]), size, sha256)


def _unquote(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
