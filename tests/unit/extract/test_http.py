"""HttpConnector against a real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, port 0)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import pipelines.extract.http as http_extract
from pipelines.config import SourceTableSpec
from pipelines.errors import ConfigError, TerminalSourceError, TransientSourceError
from pipelines.extract import connector_for
from pipelines.extract.http import HttpConnector, next_link, redact_http_url

# -- the API ------------------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Seen], Reply]


@dataclass
class Api:
    url: str
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def hits(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            seen = Seen(parts.path, query, dict(self.headers.items()))
            api.seen.append(seen)
            route = api.routes.get(parts.path)
            reply = route(seen) if route else Reply(404, {"error": f"no route {parts.path}"})
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            try:
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on the reply (an error status it will not read)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api() -> Iterator[Api]:
    api = Api(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries record their waits instead of sleeping; no proxy between us and 127.0.0.1."""
    waits: list[float] = []
    monkeypatch.setattr(http_extract, "_sleep", waits.append)
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    return waits


CUSTOMERS = [{"id": i, "name": f"c{i}"} for i in range(1, 8)]


def table(http: dict[str, Any] | None, **extra: Any) -> SourceTableSpec:
    spec: dict[str, Any] = {
        "name": "customers",
        "primary_key": ["id"],
        "columns": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"}],
        **extra,
    }
    if http is not None:
        spec["http"] = http
    return SourceTableSpec.model_validate(spec)


def read(url: str, spec: SourceTableSpec, batch_rows: int = 1000):
    connector = connector_for(url, source="crm", root=Path())
    units = list(connector.read(spec, batch_rows=batch_rows))
    rows = [row for u in units if u.batch is not None for row in u.batch.to_pylist()]
    rejects = [r for u in units for r in u.rejects]
    return rows, rejects, units


def paged(seen: Seen) -> Reply:
    page, limit = int(seen.query["page"]), int(seen.query["limit"])
    return Reply(body=CUSTOMERS[(page - 1) * limit : page * limit])


# -- paging kinds -------------------------------------------------------------------------------


def test_connector_for_http_and_https() -> None:
    for url in ("http://api.example.com/v1", "https://api.example.com/v1"):
        assert isinstance(connector_for(url, source="crm", root=Path()), HttpConnector)


@pytest.mark.parametrize(("size", "requests"), [(3, 3), (7, 2), (10, 1)])
def test_page_numbers_until_a_short_or_empty_page(api: Api, size: int, requests: int) -> None:
    api.routes["/api/customers"] = paged
    spec = table(
        {
            "endpoint": "/customers",
            "params": {"status": "active"},
            "pagination": {"kind": "page", "page_size": size},
        }
    )
    rows, rejects, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert rejects == []
    seen = api.hits("/api/customers")
    assert len(seen) == requests
    assert seen[0].query == {"status": "active", "page": "1", "limit": str(size)}
    assert [s.query["page"] for s in seen] == [str(n) for n in range(1, requests + 1)]


def test_offsets_advance_by_the_records_received(api: Api) -> None:
    def route(seen: Seen) -> Reply:
        offset, size = int(seen.query["skip"]), int(seen.query["take"])
        return Reply(body={"items": CUSTOMERS[offset : offset + size]})

    api.routes["/api/customers"] = route
    spec = table(
        {
            "endpoint": "customers",
            "records_path": "items",
            "pagination": {
                "kind": "offset",
                "offset_param": "skip",
                "size_param": "take",
                "page_size": 3,
            },
        }
    )
    rows, _, _ = read(api.url + "/api/", spec)
    assert rows == CUSTOMERS
    assert [s.query["skip"] for s in api.seen] == ["0", "3", "6"]


def test_cursor_in_a_nested_body(api: Api) -> None:
    def route(seen: Seen) -> Reply:
        start = int(seen.query.get("after", "0"))
        chunk = CUSTOMERS[start : start + 3]
        following = str(start + 3) if start + 3 < len(CUSTOMERS) else None
        return Reply(body={"data": {"items": chunk}, "meta": {"next": following}})

    api.routes["/api/customers"] = route
    spec = table(
        {
            "endpoint": "/customers",
            "records_path": "data.items",
            "pagination": {"kind": "cursor", "cursor_param": "after", "cursor_path": "meta.next"},
        }
    )
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert [s.query.get("after") for s in api.seen] == [None, "3", "6"]
    assert api.seen[0].query["limit"] == "100"


@pytest.mark.parametrize("absolute", [False, True])
def test_next_url_relative_or_absolute(api: Api, absolute: bool) -> None:
    def route(seen: Seen) -> Reply:
        start = int(seen.query.get("from", "0"))
        link = f"/api/customers?from={start + 3}" if start + 3 < len(CUSTOMERS) else None
        if link and absolute:
            link = api.url + link
        return Reply(body={"results": CUSTOMERS[start : start + 3], "links": {"next": link}})

    api.routes["/api/customers"] = route
    spec = table(
        {
            "endpoint": "/customers",
            "records_path": "results",
            "pagination": {"kind": "next_url", "next_url_path": "links.next"},
        }
    )
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert [s.query.get("from") for s in api.seen] == [None, "3", "6"]


def test_link_header(api: Api) -> None:
    def route(seen: Seen) -> Reply:
        start = int(seen.query.get("start", "0"))
        links = [f'<{api.url}/api/customers?start=0>; rel="first"']
        if start + 3 < len(CUSTOMERS):
            links.append(f'</api/customers?start={start + 3}>; rel="next"')
        return Reply(body=CUSTOMERS[start : start + 3], headers={"Link": ", ".join(links)})

    api.routes["/api/customers"] = route
    spec = table({"endpoint": "/customers", "pagination": {"kind": "link_header"}})
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert [s.query.get("start") for s in api.seen] == [None, "3", "6"]


def test_link_header_parsing() -> None:
    value = '<https://a/x?q=1,2>; title="a, b; c"; rel="prev next", <https://a/x?p=9>; rel=last'
    assert next_link([value]) == "https://a/x?q=1,2"
    assert next_link(["<https://a/x?p=2>; rel=next"]) == "https://a/x?p=2"
    assert next_link(['<https://a/x?p=9>; rel="last"']) is None
    assert next_link([]) is None


def test_no_paging_is_one_request_without_paging_params(api: Api) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(
        body=gzip.compress(json.dumps(CUSTOMERS).encode()), headers={"Content-Encoding": "gzip"}
    )
    rows, _, _ = read(api.url + "/api", table({"endpoint": "/customers"}))
    assert rows == CUSTOMERS
    assert [s.query for s in api.seen] == [{}]


def test_without_a_size_param_only_an_empty_page_ends_the_pages(api: Api) -> None:
    def route(seen: Seen) -> Reply:
        page = int(seen.query["p"])
        return Reply(body=CUSTOMERS[(page - 1) * 2 : page * 2])  # the server's own page size

    api.routes["/api/customers"] = route
    spec = table(
        {
            "endpoint": "/customers",
            "pagination": {"kind": "page", "page_param": "p", "size_param": None},
        }
    )
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert [s.query for s in api.seen] == [{"p": str(n)} for n in range(1, 6)]


def test_max_pages_caps_the_loop(api: Api) -> None:
    api.routes["/api/customers"] = paged
    spec = table(
        {"endpoint": "/customers", "pagination": {"kind": "page", "page_size": 2, "max_pages": 2}}
    )
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS[:4]
    assert len(api.seen) == 2


# -- records -> Arrow ---------------------------------------------------------------------------


def test_a_record_that_is_not_an_object_is_rejected_with_its_location(api: Api) -> None:
    records = [{"id": 1, "name": "a"}, "oops", [2, "b"], {"id": 3, "name": "c"}]
    api.routes["/api/customers"] = lambda seen: Reply(body={"data": records})
    spec = table({"endpoint": "/customers", "records_path": "data", "params": {"page": "3"}})
    rows, rejects, _ = read(api.url + "/api", spec)
    assert [r["id"] for r in rows] == [1, 3]
    assert [(r.location, r.record) for r in rejects] == [
        ("GET /api/customers?page=3 #2", '"oops"'),
        ("GET /api/customers?page=3 #3", '[2, "b"]'),
    ]
    assert all(r.reason.startswith("invalid_record: ") for r in rejects)


def test_columns_are_the_union_of_keys_and_mixed_types_become_text(api: Api) -> None:
    records = [
        {"id": 1, "score": 1.5, "tags": ["a"]},
        {"id": 2, "score": "n/a", "extra": {"k": 1}, "name": "b"},
        {"id": 3, "score": None, "flag": True},
    ]
    api.routes["/api/customers"] = lambda seen: Reply(body=records)
    _, _, units = read(api.url + "/api", table({"endpoint": "/customers"}))
    (batch,) = [u.batch for u in units]
    assert batch.schema.names == ["id", "score", "tags", "extra", "name", "flag"]
    assert str(batch.schema.field("id").type) == "int64"  # untouched
    assert str(batch.schema.field("flag").type) == "bool"
    assert batch.column("score").to_pylist() == ["1.5", "n/a", None]
    assert batch.column("tags").to_pylist() == ['["a"]', None, None]
    assert batch.column("extra").to_pylist() == [None, '{"k": 1}', None]


def test_a_declared_column_absent_from_every_record_is_null(api: Api) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(body=[{"id": 1}, {"id": 2}])
    rows, _, _ = read(api.url + "/api", table({"endpoint": "/customers"}))
    assert rows == [{"id": 1, "name": None}, {"id": 2, "name": None}]


def test_batches_are_bounded_across_pages(api: Api) -> None:
    def route(seen: Seen) -> Reply:
        page, limit = int(seen.query["page"]), int(seen.query["limit"])
        chunk: list[Any] = list(CUSTOMERS[(page - 1) * limit : page * limit])
        if page == 2:
            chunk.append(42)  # a reject counts towards the bound too
        return Reply(body=chunk)

    api.routes["/api/customers"] = route
    spec = table({"endpoint": "/customers", "pagination": {"kind": "page", "page_size": 3}})
    rows, rejects, units = read(api.url + "/api", spec, batch_rows=2)
    assert [u.rows_read for u in units] == [2, 2, 2, 2]
    assert all(u.batch is None or u.batch.num_rows <= 2 for u in units)
    assert rows == CUSTOMERS
    assert len(rejects) == 1


# -- failures -----------------------------------------------------------------------------------


def flaky(failures: list[Reply], then: Reply) -> Route:
    def route(seen: Seen) -> Reply:
        return failures.pop(0) if failures else then

    return route


def test_503_twice_then_200_is_retried(api: Api, no_waiting: list[float], monkeypatch) -> None:
    monkeypatch.setattr(http_extract, "BACKOFF_SECONDS", 0.01)
    api.routes["/api/customers"] = flaky([Reply(503, {}), Reply(503, {})], Reply(body=CUSTOMERS))
    rows, _, _ = read(api.url + "/api", table({"endpoint": "/customers", "max_retries": 2}))
    assert rows == CUSTOMERS
    assert len(api.seen) == 3
    assert no_waiting == [0.01, 0.02]


def test_429_honours_retry_after_capped(api: Api, no_waiting: list[float], monkeypatch) -> None:
    monkeypatch.setattr(http_extract, "MAX_WAIT_SECONDS", 5.0)
    api.routes["/api/customers"] = flaky(
        [Reply(429, {}, {"Retry-After": "2"}), Reply(429, {}, {"Retry-After": "3600"})],
        Reply(body=CUSTOMERS),
    )
    rows, _, _ = read(api.url + "/api", table({"endpoint": "/customers"}))
    assert rows == CUSTOMERS
    assert no_waiting == [2.0, 5.0]


def test_transient_failures_give_up_after_max_retries(api: Api) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(502, {"error": "bad gateway"})
    with pytest.raises(TransientSourceError, match=r"after 3 attempts \(HTTP 502"):
        read(api.url + "/api", table({"endpoint": "/customers", "max_retries": 2}))
    assert len(api.seen) == 3


def test_a_timeout_is_retried(api: Api) -> None:
    calls: list[int] = []

    def route(seen: Seen) -> Reply:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)
        return Reply(body=CUSTOMERS)

    api.routes["/api/customers"] = route
    spec = table({"endpoint": "/customers", "timeout_seconds": 0.1})
    rows, _, _ = read(api.url + "/api", spec)
    assert rows == CUSTOMERS
    assert len(calls) == 2


def test_connection_refused_is_transient() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientSourceError, match="cannot connect"):
        read(f"http://127.0.0.1:{port}/api", table({"endpoint": "/x", "max_retries": 1}))


def test_500_is_terminal_with_a_redacted_excerpt(api: Api, monkeypatch) -> None:
    monkeypatch.setenv("SSOT_TEST_CRM_TOKEN", "Bearer tok-0123456789")
    api.routes["/api/customers"] = lambda seen: Reply(
        500, {"error": "db down", "echo": seen.headers.get("Authorization"), "pad": "x" * 2000}
    )
    spec = table(
        {"endpoint": "/customers", "headers_env": {"Authorization": "SSOT_TEST_CRM_TOKEN"}}
    )
    with pytest.raises(TerminalSourceError) as info:
        read(api.url + "/api", spec)
    message = str(info.value)
    assert "HTTP 500" in message and "db down" in message
    assert "crm" in message and "customers" in message
    assert "tok-0123456789" not in message and "***" in message
    assert len(message) < 1000
    assert len(api.seen) == 1


def test_a_repeated_cursor_stops_the_read(api: Api) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(body={"items": CUSTOMERS[:2], "next": "same"})
    spec = table(
        {
            "endpoint": "/customers",
            "records_path": "items",
            "pagination": {"kind": "cursor", "cursor_path": "next"},
        }
    )
    with pytest.raises(TerminalSourceError, match="'same', which it had already returned"):
        read(api.url + "/api", spec)
    assert len(api.seen) == 2


def test_a_repeated_next_url_or_ignored_page_param_stops_the_read(api: Api) -> None:
    api.routes["/api/loop"] = lambda seen: Reply(body={"r": [], "next": "/api/loop?x=1"})
    api.routes["/api/same"] = lambda seen: Reply(body=CUSTOMERS[:3])
    spec = table(
        {
            "endpoint": "/loop",
            "records_path": "r",
            "pagination": {"kind": "next_url", "next_url_path": "next"},
        }
    )
    with pytest.raises(TerminalSourceError, match="loop forever"):
        read(api.url + "/api", spec)
    spec = table({"endpoint": "/same", "pagination": {"kind": "page", "page_size": 3}})
    with pytest.raises(TerminalSourceError, match="same records as the page before"):
        read(api.url + "/api", spec)


def test_a_next_url_on_another_host_is_not_followed(api: Api) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(
        body={"r": CUSTOMERS, "next": "http://elsewhere.invalid/steal?token=abc123"}
    )
    spec = table(
        {
            "endpoint": "/customers",
            "records_path": "r",
            "pagination": {"kind": "next_url", "next_url_path": "next"},
        }
    )
    with pytest.raises(TerminalSourceError, match="another host") as info:
        read(api.url + "/api", spec)
    assert "abc123" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "records_path", "expected"),
    [
        (b"<html>maintenance</html>", None, "not JSON"),
        (b'{"data": []}', "items", "no 'items'"),
        (b'{"data": []}', None, "records_path to e.g. 'data'"),
    ],
)
def test_a_page_without_records_is_terminal(
    api: Api, body: bytes, records_path: str | None, expected: str
) -> None:
    api.routes["/api/customers"] = lambda seen: Reply(body=body)
    spec = table({"endpoint": "/customers", "records_path": records_path})
    with pytest.raises(TerminalSourceError, match=expected) as info:
        read(api.url + "/api", spec)
    assert "HTTP 200" in str(info.value)
    assert "/api/customers" in str(info.value)
    assert "'crm'" in str(info.value)


# -- secrets ------------------------------------------------------------------------------------

TOKEN = "tok-SECRET-9f8e7d"
PASSWORD = "pw-SECRET-1a2b"
API_KEY = "key-SECRET-5c6d"


def test_secrets_reach_the_server_but_never_an_error_reject_or_log(
    api: Api, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSOT_TEST_CRM_TOKEN", TOKEN)
    echoes: list[Any] = []

    def route(seen: Seen) -> Reply:
        echo = {"headers": seen.headers, "query": seen.query}
        echoes.append(echo)
        if seen.path.endswith("/records"):
            return Reply(body=[{"id": 1}, f"token={TOKEN} key={API_KEY}"])
        status = 503 if seen.path.endswith("/flaky") else 401
        return Reply(status, echo)

    for path in ("/api/records", "/api/fail", "/api/flaky"):
        api.routes[path] = route
    url = f"http://svc:{PASSWORD}@{api.url.removeprefix('http://')}/api?api_key={API_KEY}"
    caplog.set_level(logging.DEBUG, logger="pipelines.extract.http")

    def spec(endpoint: str) -> SourceTableSpec:
        return table(
            {
                "endpoint": endpoint,
                "headers_env": {"X-Api-Token": "SSOT_TEST_CRM_TOKEN"},
                "max_retries": 1,
            }
        )

    _, rejects, _ = read(url, spec("/records"))
    messages = [r.location + r.record + r.reason for r in rejects]
    for endpoint, error in (("/fail", TerminalSourceError), ("/flaky", TransientSourceError)):
        with pytest.raises(error) as info:
            read(url, spec(endpoint))
        messages.append(str(info.value))

    # the credentials were sent ...
    first = api.seen[0]
    assert first.headers["X-Api-Token"] == TOKEN
    assert first.query["api_key"] == API_KEY
    basic = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    assert first.headers["Authorization"] == f"Basic {basic}"
    # ... the server echoed them back, and nothing we wrote repeats them
    assert "HTTP 401" in messages[1] and "HTTP 503" in messages[2]
    assert caplog.records, "retries and pages are logged"
    written = "\n".join([*messages, *(r.getMessage() for r in caplog.records)])
    for secret in (TOKEN, PASSWORD, API_KEY, basic):
        assert secret not in written
    assert "***" in written


def test_redact_http_url() -> None:
    assert (
        redact_http_url("https://u:p4ss@h/x?api_key=k&page=2&access_token=t&q=a%20b")
        == "https://u:***@h/x?api_key=***&page=2&access_token=***&q=a%20b"
    )
    assert redact_http_url("https://ghp_abc@h/x") == "https://***@h/x"
    assert redact_http_url("http://h/x?page=1") == "http://h/x?page=1"


def test_a_missing_header_env_var_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delenv("SSOT_TEST_UNSET_TOKEN", raising=False)
    spec = table({"endpoint": "/x", "headers_env": {"Authorization": "SSOT_TEST_UNSET_TOKEN"}})
    with pytest.raises(ConfigError) as info:
        read("http://127.0.0.1:9/api", spec)
    message = str(info.value)
    for part in ("sources/crm.yml", "'customers'", "'Authorization'", "SSOT_TEST_UNSET_TOKEN"):
        assert part in message


def test_a_table_without_http_options_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"sources/crm\.yml: table 'customers' has no `http:`"):
        read("http://127.0.0.1:9/api", table(None))


# -- landing ------------------------------------------------------------------------------------


def test_land_an_http_table_and_counts_reconcile(api: Api, make_project, monkeypatch) -> None:
    from pipelines.landing import land_table
    from pipelines.project import load_project
    from pipelines.warehouse.duckdb import DuckDBWarehouse

    served: list[Any] = [
        {"id": 1, "email": "a@x.com", "plan": "pro"},
        {"id": 2, "email": "not-an-email"},
        "garbage",
        {"id": 4, "email": "d@x.com"},
        {"id": None, "email": "e@x.com"},
        {"id": 6, "email": "f@x.com"},
        {"id": 7, "email": "g@x.com"},
    ]
    api.routes["/api/users"] = lambda seen: Reply(
        body={"data": served[(int(seen.query["page"]) - 1) * 3 : int(seen.query["page"]) * 3]}
    )
    source = f"""
    name: web
    owner: team@example.com
    connection: {{url_env: SSOT_TEST_WEB_URL, default: '{api.url}/api'}}
    tables:
      - name: users
        primary_key: [id]
        http:
          endpoint: /users
          records_path: data
          pagination: {{kind: page, page_size: 3}}
        columns:
          - {{name: id, type: integer, nullable: false}}
          - {{name: email, type: string, pattern: '^[^@]+@[^@]+$'}}
    """
    monkeypatch.delenv("SSOT_TEST_WEB_URL", raising=False)
    project = load_project(make_project({"sources/web.yml": source}))
    web = project.sources["web"]
    with DuckDBWarehouse(":memory:") as warehouse:
        result = land_table(project, warehouse, web, web.table("users"), run_id="r1", batch_rows=2)
        raw = warehouse.query("select id from raw.web__users order by id").column(0).to_pylist()
        quarantined = warehouse.scalar("select count(*) from ssot_meta.quarantine")
    assert result.rows_read == len(served)
    assert result.rows_landed + result.rows_quarantined == len(served)
    assert raw == [1, 4, 6, 7]
    assert quarantined == 3
    assert result.extra_columns == ("plan",)
