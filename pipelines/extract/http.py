"""HTTP JSON APIs: one endpoint lists one table's records, page after page.

Each request's URL is the connection URL, plus ``http.endpoint``, ``http.params`` and the paging
parameters. Paging follows ``http.pagination`` (page numbers, offsets, a cursor in the body, a next
URL in the body or an RFC 8288 ``Link`` header); a server that hands out the same page, cursor or
next URL twice stops the read with an error instead of looping forever.

Records are taken from the JSON body at ``http.records_path`` and turned into Arrow as they come:
columns are the record keys (plus the declared columns, null where a record lacks them), typed by
Arrow, or text when a column mixes types or holds nested values (JSON-encoded). A record that is
not a JSON object becomes a :class:`Reject`; a body that is not JSON, or lacks the records, fails
the read: skipping a page would lose its rows silently.

Credentials come from environment variables (``http.headers_env``) or the URL's user info and
never appear in errors, rejects or log lines: URLs are redacted (:func:`redact_http_url`) and every
message is scrubbed of the secret values themselves.

An API has no generic "changed since" filter, so ``pull`` is not used: every read lists the whole
collection and landing keeps only the rows that are new or changed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from http.client import HTTPException, HTTPMessage, InvalidURL
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import (
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    urlencode,
    urljoin,
    urlsplit,
    urlunsplit,
)

from pipelines.errors import ConfigError, TerminalSourceError, TransientSourceError
from pipelines.extract.base import DEFAULT_BATCH_ROWS, Connector, Extracted, Pull
from pipelines.quality.contracts import Reject
from pipelines.urls import SENSITIVE_PARAM, redact_url

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import HttpOptions, SourceTableSpec

log = logging.getLogger(__name__)

#: First wait before retrying a transient failure; doubles after each attempt.
BACKOFF_SECONDS = 0.5
#: Longest single wait, whether from the backoff or from a server's ``Retry-After``.
MAX_WAIT_SECONDS = 60.0
#: Statuses that say "try again later"; every other 4xx/5xx is terminal.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
#: Characters of a failed response's body quoted in the error.
EXCERPT_CHARS = 300
#: Secret values shorter than this are not scrubbed from text (they would mangle every message).
MIN_SECRET_CHARS = 4
USER_AGENT = "ssot-pipelines (python urllib)"

#: Query parameters whose value is a credential, judged by their name.

#: Replaced in tests so retries do not really wait.
_sleep: Callable[[float], None] = time.sleep

_MISSING: Any = object()


def redact_http_url(url: str) -> str:
    """The URL with its user info and credential-like query values masked (``***``)."""
    url = redact_url(url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # A user name without a password is usually a token (https://TOKEN@host).
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within one host: headers carry credentials."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            return None  # urllib then raises HTTPError with the 3xx status
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# ---------------------------------------------------------------------------------------------
# JSON helpers


def _dig(value: Any, path: str) -> Any:
    """The value at a dotted path (``data.items``; digits index lists), or ``_MISSING``."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _column(values: list[Any]) -> pa.Array:
    """Arrow's own type for the values; text when they do not share one or are nested."""
    import pyarrow as pa

    if not any(isinstance(v, dict | list) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array(
        [
            None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for v in values
        ],
        pa.string(),
    )


def records_to_batch(records: list[dict[str, Any]], names: Iterable[str]) -> pa.RecordBatch:
    """One column per name (missing keys are null), each typed on its own."""
    import pyarrow as pa

    names = list(names)
    arrays = [_column([record.get(name) for record in records]) for name in names]
    return pa.RecordBatch.from_arrays(arrays, names=names)


_LINK_VALUE = re.compile(
    r"<([^>]*)>((?:\s*;\s*[^;,=\s]+\s*(?:=\s*(?:\"(?:[^\"\\]|\\.)*\"|[^;,\s]*))?)*)"
)
_LINK_PARAM = re.compile(r";\s*([^;,=\s]+)\s*(?:=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^;,\s]*)))?")


def next_link(values: Iterable[str]) -> str | None:
    """The target of the ``rel="next"`` link among ``Link`` header values (RFC 8288)."""
    for value in values:
        for match in _LINK_VALUE.finditer(value):
            for name, quoted, bare in _LINK_PARAM.findall(match.group(2)):
                if name.lower() != "rel":
                    continue
                rel = re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
                if "next" in rel.lower().split():
                    return match.group(1).strip()
    return None


def _retry_after(headers: Message | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), or None."""
    value = (headers.get("Retry-After") if headers is not None else None) or ""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _decode(body: bytes, headers: Message) -> bytes:
    encoding = (headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Message
    body: bytes


@dataclass(frozen=True)
class _Retry:
    """A transient failure: why, and how long the server asked us to wait (if it did)."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Page:
    url: str
    status: int
    records: list[Any]


class HttpConnector(Connector):
    """A JSON API over HTTP(S); each table names its endpoint and paging under ``http:``."""

    schemes = ("http", "https")

    def read(
        self,
        table: SourceTableSpec,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pull: Pull | None = None,
    ) -> Iterator[Extracted]:
        """Every record the endpoint lists, in units of at most ``batch_rows`` records.

        ``pull`` is not used: an API has no generic filter, landing skips unchanged rows.
        """
        yield from _Session(self, table).units(batch_rows)


class _Session:
    """One read of one table: resolved options, headers and the secrets to keep out of text."""

    def __init__(self, connector: HttpConnector, table: SourceTableSpec) -> None:
        self.source = connector.source
        self.table = table
        yml = f"sources/{self.source}.yml"
        if table.http is None:
            raise ConfigError(
                f"{yml}: table {table.name!r} has no `http:` options, but the source is an HTTP "
                f"API ({redact_http_url(connector.url)}). Add `http: {{endpoint: /path/of/the/"
                "records}` to the table (and `pagination:` if the API pages its results)."
            )
        self.options: HttpOptions = table.http
        paging = self.options.pagination
        if paging.kind == "cursor" and not paging.cursor_path:
            raise ConfigError(
                f"{yml}: table {table.name!r}: http.pagination.kind is 'cursor' but cursor_path "
                "is not set; give the dotted path of the next cursor in the body (e.g. meta.next)"
            )
        if paging.kind == "next_url" and not paging.next_url_path:
            raise ConfigError(
                f"{yml}: table {table.name!r}: http.pagination.kind is 'next_url' but "
                "next_url_path is not set; give the dotted path of the next page's URL in the "
                "body (e.g. links.next)"
            )

        secrets: list[str] = []
        parts = urlsplit(connector.url)
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }
        host = parts.netloc.rpartition("@")[2]
        if "@" in parts.netloc:
            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
            secrets += [password, parts.password or "", basic]
            if parts.password is None:
                secrets += [user, parts.username or ""]
        self.base = urlunsplit(parts._replace(netloc=host, fragment=""))
        for name, variable in self.options.headers_env.items():
            value = os.environ.get(variable)
            if not value:
                raise ConfigError(
                    f"{yml}: table {table.name!r}: header {name!r} takes its value from the "
                    f"environment variable {variable!r} (http.headers_env), which is not set. "
                    f"Set {variable} before running."
                )
            headers[name] = value
            secrets += [value, *value.split()[1:]]
        endpoint = urlsplit(self.options.endpoint)
        for name, value in [
            *parse_qsl(parts.query, keep_blank_values=True),
            *parse_qsl(endpoint.query, keep_blank_values=True),
            *self.options.params.items(),
        ]:
            if SENSITIVE_PARAM.search(name):
                secrets.append(value)
        self.headers = headers
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                forms |= {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
                forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        #: longest first, so a secret containing another is replaced whole
        self.secrets = sorted(forms, key=len, reverse=True)
        self.opener = urllib.request.build_opener(_SameHostRedirects)

    # -- text that leaves this module ---------------------------------------------------------
    def safe(self, text: str) -> str:
        """``text`` with every secret value masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def show(self, url: str) -> str:
        return self.safe(redact_http_url(url))

    @property
    def where(self) -> str:
        return f"source {self.source!r}, table {self.table.name!r}"

    def excerpt(self, body: bytes) -> str:
        """The start of a body, on one line, without secrets."""
        longest = max((len(s) for s in self.secrets), default=0)
        limit = EXCERPT_CHARS * 4 + longest
        text = body[:limit].decode("utf-8", errors="replace")
        if len(body) > limit:
            # a secret cut in half at the end would escape the scrubbing: drop that tail
            text = text[: max(0, len(text) - longest)]
        text = " ".join(self.safe(text).split())
        return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."

    # -- URLs ----------------------------------------------------------------------------------
    def page_url(self, paging: dict[str, str]) -> str:
        """Connection URL + endpoint + fixed params + ``paging`` (which wins over the others)."""
        base = urlsplit(self.base)
        endpoint = urlsplit(self.options.endpoint)
        path = base.path
        if endpoint.path:
            path = base.path.rstrip("/") + "/" + endpoint.path.lstrip("/")
        pairs = [
            *parse_qsl(base.query, keep_blank_values=True),
            *parse_qsl(endpoint.query, keep_blank_values=True),
        ]
        params = {k: v for k, v in self.options.params.items() if k not in paging}
        query = [
            *((k, v) for k, v in pairs if k not in params and k not in paging),
            *params.items(),
            *paging.items(),
        ]
        return urlunsplit((base.scheme, base.netloc, path or "/", urlencode(query), ""))

    def location(self, url: str) -> str:
        parts = urlsplit(self.show(url))
        return f"GET {parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")

    # -- requests ------------------------------------------------------------------------------
    def get(self, url: str) -> _Response:
        """The response to GET ``url``, retrying transient failures with exponential backoff."""
        attempts = self.options.max_retries + 1
        delay = BACKOFF_SECONDS
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(url)
            if isinstance(outcome, _Response):
                return outcome
            if attempt == attempts:
                raise TransientSourceError(
                    f"{self.where}: GET {self.show(url)} still failing after {attempts} "
                    f"attempt{'s' if attempts > 1 else ''} ({outcome.reason}). The API may be "
                    "down or rate-limiting; retry later, or raise http.max_retries in "
                    f"sources/{self.source}.yml."
                )
            wait = delay if outcome.retry_after is None else outcome.retry_after
            wait = min(wait, MAX_WAIT_SECONDS)
            log.warning(
                "%s: GET %s failed (%s); retry %d of %d in %.1fs",
                self.where,
                self.show(url),
                outcome.reason,
                attempt,
                attempts - 1,
                wait,
            )
            _sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")

    def _attempt(self, url: str) -> _Response | _Retry:
        request = urllib.request.Request(url, headers=self.headers, method="GET")
        try:
            with self.opener.open(request, timeout=self.options.timeout_seconds) as response:
                raw = response.read()
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            return self._failed(url, exc)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError) or not isinstance(reason, OSError):
                raise TerminalSourceError(
                    f"{self.where}: cannot GET {self.show(url)}: {self.safe(str(reason))}"
                ) from None
            return _Retry(self.safe(f"cannot connect: {reason}"))
        except InvalidURL as exc:
            raise TerminalSourceError(
                f"{self.where}: cannot GET {self.show(url)}: {self.safe(str(exc))}; check the "
                f"connection URL of sources/{self.source}.yml"
            ) from None
        except (TimeoutError, ConnectionError, HTTPException) as exc:
            return _Retry(self.safe(f"{type(exc).__name__}: {exc}".rstrip(": ")))
        try:
            body = _decode(raw, headers)
        except (OSError, EOFError, zlib.error) as exc:
            raise TerminalSourceError(
                f"{self.where}: GET {self.show(url)} returned HTTP {status} with a body that "
                f"cannot be decompressed ({exc})"
            ) from None
        return _Response(status, headers, body)

    def _failed(self, url: str, exc: urllib.error.HTTPError) -> _Retry:
        status = exc.code
        headers: Message = exc.headers
        try:
            with exc:
                body = _decode(exc.read(), headers)
        except Exception:
            body = b""
        reason = self.safe(str(exc.reason or ""))
        if status in TRANSIENT_STATUSES:
            return _Retry(f"HTTP {status} {reason}".strip(), _retry_after(headers))
        if 300 <= status < 400:
            target = urljoin(url, headers.get("Location") or "")
            raise TerminalSourceError(
                f"{self.where}: GET {self.show(url)} redirects (HTTP {status}) to "
                f"{self.show(target)}, another host; credentials are not sent across hosts, so "
                f"point the connection URL at that host (sources/{self.source}.yml)."
            ) from None
        hints = {
            401: "the API refused the credentials: check the environment variables named in "
            "http.headers_env (and the URL env var)",
            403: "the credentials lack access to this endpoint",
            404: f"check http.endpoint in sources/{self.source}.yml and the connection URL",
        }
        hint = hints.get(status, "retrying cannot help")
        excerpt = self.excerpt(body)
        raise TerminalSourceError(
            f"{self.where}: GET {self.show(url)} failed with HTTP {status} {reason}".rstrip()
            + (f": {excerpt!r}" if excerpt else " (empty body)")
            + f". {hint[0].upper()}{hint[1:]}."
        ) from None

    # -- pages ---------------------------------------------------------------------------------
    def records(self, url: str, response: _Response) -> tuple[Any, list[Any]]:
        """The parsed body and its list of records; TerminalSourceError when either is missing."""
        head = f"{self.where}: GET {self.show(url)} returned HTTP {response.status}"
        path = self.options.records_path
        expected = (
            f"a JSON object with a list of records at {path!r} (http.records_path)"
            if path
            else "a JSON list of records"
        )
        try:
            body = json.loads(response.body)
        except ValueError as exc:
            kind = response.headers.get("Content-Type") or "no content type"
            raise TerminalSourceError(
                f"{head} ({kind}) with a body that is not JSON ({exc}); expected {expected}. "
                f"The body starts with: {self.excerpt(response.body)!r}"
            ) from None
        if path is None:
            if isinstance(body, list):
                return body, body
            hint = ""
            if isinstance(body, dict):
                lists = [k for k, v in body.items() if isinstance(v, list)]
                hint = f" (keys: {', '.join(list(body)[:10])})"
                if lists:
                    hint += f"; set http.records_path to e.g. {lists[0]!r}"
            raise TerminalSourceError(
                f"{head} with {_json_kind(body)}{hint}, but expected {expected} "
                f"(sources/{self.source}.yml)"
            )
        found = _dig(body, path)
        if found is _MISSING:
            keys = ", ".join(list(body)[:10]) if isinstance(body, dict) else _json_kind(body)
            raise TerminalSourceError(
                f"{head} with no {path!r} in its body (top level: {keys}); expected {expected}. "
                f"Check http.records_path in sources/{self.source}.yml."
            )
        if found is None:
            return body, []
        if not isinstance(found, list):
            raise TerminalSourceError(
                f"{head} with {_json_kind(found)} at {path!r}; expected {expected}"
            )
        return body, found

    def pages(self) -> Iterator[_Page]:
        """Every page of the endpoint, following ``http.pagination``."""
        paging = self.options.pagination
        kind = paging.kind
        size = (
            {paging.size_param: str(paging.page_size)}
            if paging.size_param and kind != "none"
            else {}
        )
        number, offset = 1, 0
        if kind == "page":
            url = self.page_url({**size, paging.page_param: "1"})
        elif kind == "offset":
            url = self.page_url({**size, paging.offset_param: "0"})
        else:
            url = self.page_url(size)
        seen_urls = {url}
        seen_cursors: set[str] = set()
        previous: bytes | None = None
        count = 0
        while True:
            response = self.get(url)
            body, records = self.records(url, response)
            count += 1
            log.debug(
                "%s: GET %s -> HTTP %d, %d records",
                self.where,
                self.show(url),
                response.status,
                len(records),
            )
            following: str | None = None
            if kind in ("page", "offset"):
                full = bool(records) and (
                    paging.size_param is None or len(records) >= paging.page_size
                )
                if full:
                    digest = hashlib.sha256(
                        json.dumps(records, sort_keys=True, default=str).encode()
                    ).digest()
                    if digest == previous:
                        param = paging.page_param if kind == "page" else paging.offset_param
                        raise self._loop(
                            url,
                            f"the same records as the page before (is {param!r} the right parameter?)",
                        )
                    previous = digest
                    if kind == "page":
                        number += 1
                        following = self.page_url({**size, paging.page_param: str(number)})
                    else:
                        offset += len(records)
                        following = self.page_url({**size, paging.offset_param: str(offset)})
            elif kind == "cursor":
                cursor = _dig(body, paging.cursor_path or "")
                if cursor is not _MISSING and cursor is not None and cursor != "":
                    text = cursor if isinstance(cursor, str) else json.dumps(cursor)
                    if text in seen_cursors:
                        shown = self.safe(text if len(text) <= 80 else text[:80] + "...")
                        raise self._loop(url, f"cursor {shown!r}, which it had already returned")
                    seen_cursors.add(text)
                    following = self.page_url({**size, paging.cursor_param: text})
            elif kind in ("next_url", "link_header"):
                if kind == "next_url":
                    link = _dig(body, paging.next_url_path or "")
                    if link is not _MISSING and link is not None and not isinstance(link, str):
                        raise TerminalSourceError(
                            f"{self.where}: GET {self.show(url)}: {paging.next_url_path!r} "
                            f"(http.pagination.next_url_path) holds {_json_kind(link)}, not a URL"
                        )
                else:
                    link = next_link(response.headers.get_all("Link") or [])
                if isinstance(link, str) and link.strip():
                    following = urljoin(url, link.strip())
                    if _origin(following) != _origin(self.base):
                        raise TerminalSourceError(
                            f"{self.where}: GET {self.show(url)} points to the next page at "
                            f"{self.show(following)}, another host; credentials are not sent "
                            "across hosts, so the read stops here rather than skip pages."
                        )
                    if following in seen_urls:
                        raise self._loop(
                            url, f"next page {self.show(following)}, which was already read"
                        )
                    seen_urls.add(following)
            del body
            yield _Page(url, response.status, records)
            if following is None:
                return
            if paging.max_pages is not None and count >= paging.max_pages:
                log.warning(
                    "%s: stopped after %d pages (http.pagination.max_pages); more pages remain",
                    self.where,
                    count,
                )
                return
            url = following

    def _loop(self, url: str, what: str) -> TerminalSourceError:
        return TerminalSourceError(
            f"{self.where}: GET {self.show(url)} returned {what}; following it would loop "
            f"forever. Check http.pagination in sources/{self.source}.yml or the API."
        )

    # -- units ---------------------------------------------------------------------------------
    def units(self, batch_rows: int) -> Iterator[Extracted]:
        """Records of every page, regrouped into units of at most ``batch_rows``."""
        #: every column seen so far, in order of first appearance: batches keep one layout
        names: dict[str, None] = {}
        declared = [column.name for column in self.table.columns]
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for page in self.pages():
            location = self.location(page.url)
            for number, record in enumerate(page.records, start=1):
                if isinstance(record, dict):
                    rows.append(record)
                else:
                    rejects.append(
                        Reject(
                            f"{location} #{number}",
                            self.safe(json.dumps(record, ensure_ascii=False)),
                            f"invalid_record: expected a JSON object, got {_json_kind(record)}",
                        )
                    )
                if len(rows) + len(rejects) >= batch_rows:
                    yield _unit(rows, rejects, names, declared)
                    rows, rejects = [], []
        if rows or rejects:
            yield _unit(rows, rejects, names, declared)


def _unit(
    rows: list[dict[str, Any]], rejects: list[Reject], names: dict[str, None], declared: list[str]
) -> Extracted:
    for row in rows:
        names.update(dict.fromkeys(row))
    for name in declared:
        names.setdefault(name, None)
    batch = records_to_batch(rows, names) if rows else None
    return Extracted(batch, tuple(rejects))
