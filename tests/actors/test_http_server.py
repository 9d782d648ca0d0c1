"""The scheduler's HTTP server (actors/http/server.py) in-process, with real HTTP requests
on loopback: its settings (the loopback-or-token rule, the token file, the older flag
names), the bearer-token check, what /metrics serves and how start fails.
(tests/e2e/test_http.py runs the same through real scheduler processes.)"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.config import SchedulerConfig
from actors.errors import ConfigError
from actors.http.server import HttpServer
from actors.http.settings import HttpSettings, http_settings
from actors.metrics import MetricsBoard

TOKEN = "3f9c2b7e-a-token"


def token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> str:
    path = tmp_path / "http.token"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def settings_of(**fields: object) -> HttpSettings | None:
    return http_settings(SchedulerConfig.from_env(**fields))


def refusal(**fields: object) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_of(**fields)
    return str(caught.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ settings


def test_no_port_means_no_http_server() -> None:
    assert settings_of() is None
    assert settings_of(http_bind="0.0.0.0") is None  # nothing is served, nothing to refuse


def test_http_serves_loopback_by_default_without_a_token() -> None:
    assert settings_of(http_port="9100") == HttpSettings("127.0.0.1", 9100, None)


def test_the_port_and_address_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HTTP_PORT", "9101")
    monkeypatch.setenv("CORRAL_HTTP_BIND", "::1")
    assert settings_of() == HttpSettings("::1", 9101, None)


def test_metrics_port_and_addr_are_older_names_of_http_port_and_bind() -> None:
    settings = settings_of(metrics_port="9100", metrics_addr="127.0.0.2")
    assert settings == HttpSettings("127.0.0.2", 9100, None, "metrics_port", "metrics_addr")
    assert settings_of(http_port="9100", metrics_port="9100") is not None  # the same: fine


def test_two_different_ports_under_both_names_are_refused() -> None:
    message = refusal(http_port="9100", metrics_port="9200")
    assert message.startswith("--metrics-port / CORRAL_METRICS_PORT: 9200 is not allowed")
    assert "older name" in message
    assert "--http-bind" in refusal(http_port="1", http_bind="::1", metrics_addr="127.0.0.2")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.1.2.3", "192.168.0.7"])
def test_a_bind_other_hosts_can_reach_without_a_token_file_is_refused(host: str) -> None:
    message = refusal(http_port="9100", http_bind=host)
    assert message.startswith(f"--http-bind / CORRAL_HTTP_BIND: {host!r} is not allowed")
    assert "--http-token-file" in message
    older = refusal(metrics_port="9100", metrics_addr=host)
    assert older.startswith("--metrics-addr / CORRAL_METRICS_ADDR")
    assert "--http-token-file" in older


@pytest.mark.parametrize(
    ("given", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.3.2.1", "127.3.2.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_loopback_binds_need_no_token(given: str, host: str) -> None:
    assert settings_of(http_port="9100", http_bind=given) == HttpSettings(host, 9100, None)


@pytest.mark.parametrize("host", ["example.org", "tcp://127.0.0.1:9100", "127.0.0.1:9100"])
def test_a_bind_that_is_not_an_ip_address_is_refused(host: str) -> None:
    assert "an IP address of this host" in refusal(http_port="9100", http_bind=host)


def test_with_a_token_file_any_address_may_be_given(tmp_path: Path) -> None:
    settings = settings_of(
        http_port="9100", http_bind="0.0.0.0", http_token_file=token_file(tmp_path)
    )
    assert settings == HttpSettings("0.0.0.0", 9100, TOKEN.encode())


@pytest.mark.parametrize(
    ("text", "mode", "allowed"),
    [
        (TOKEN, 0o644, "readable by its owner only (chmod 600)"),
        (TOKEN, 0o640, "readable by its owner only (chmod 600)"),
        (TOKEN, 0o602, "readable by its owner only (chmod 600)"),
        ("", 0o600, "this one is empty"),
        ("  \n\n", 0o600, "this one is empty"),
        (f"{TOKEN}\nanother\n", 0o600, "one line"),
        ("a token with spaces", 0o600, "no spaces"),
        ("jeton-\u00e9", 0o600, "printable ASCII"),
    ],
    ids=["644", "640", "602", "empty", "blank", "two-lines", "spaces", "non-ascii"],
)
def test_a_token_file_is_refused_unless_private_and_one_line(
    tmp_path: Path, text: str, mode: int, allowed: str
) -> None:
    path = token_file(tmp_path, text, mode)
    message = refusal(http_port="9100", http_token_file=path)
    assert message.startswith(f"--http-token-file / CORRAL_HTTP_TOKEN_FILE: {path!r}")
    assert allowed in message


def test_a_missing_or_unreadable_token_file_is_refused(tmp_path: Path) -> None:
    assert "No such file" in refusal(http_port="9100", http_token_file=str(tmp_path / "none"))
    assert "Is a directory" in refusal(http_port="9100", http_token_file=str(tmp_path))


def test_a_token_file_requires_the_token_on_loopback_too(tmp_path: Path) -> None:
    settings = settings_of(http_port="9100", http_token_file=token_file(tmp_path, f"{TOKEN}\r\n"))
    assert settings == HttpSettings("127.0.0.1", 9100, TOKEN.encode())


# ------------------------------------------------------------------ serving


class Servers:
    """Servers started on free loopback ports; ``stop_all`` after the test."""

    def __init__(self) -> None:
        self.started: list[HttpServer] = []

    async def start(
        self, token: str | None = None, board: Callable[[], MetricsBoard | None] | None = None
    ) -> tuple[HttpServer, str]:
        """A started server (its board empty unless given) and its base URL."""
        settings = HttpSettings("127.0.0.1", free_port(), token.encode() if token else None)
        empty = MetricsBoard()
        server = HttpServer(settings, board or (lambda: empty))
        await server.start()
        self.started.append(server)
        return server, settings.url


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    made = Servers()
    yield made
    for server in made.started:
        await server.stop()


async def get(
    url: str, token: str | None = None, scheme: str = "Bearer"
) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


def samples(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


async def test_metrics_are_served_from_the_board_in_prometheus_text(servers: Servers) -> None:
    board = MetricsBoard()
    board.publish("scheduler", {"jobs": {"RUNNING": 3, "FAILED": 2}})
    _server, url = await servers.start(board=lambda: board)
    status, text, headers = await get(f"{url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    figures = samples(text)
    assert (figures["corral_jobs_running"], figures["corral_dead_letters"]) == (3, 2)
    assert (figures["corral_leader"], figures["corral_http_refused_total"]) == (1, 0)
    status, _, _ = await get(f"{url}/nothing-here")
    assert status == 404


async def test_a_standby_serves_only_that_it_does_not_lead(servers: Servers) -> None:
    _server, url = await servers.start(board=lambda: None)
    status, text, _ = await get(f"{url}/metrics")
    assert status == 200
    assert samples(text) == {"corral_leader": 0, "corral_http_refused_total": 0}


async def test_with_a_token_every_request_without_it_gets_401_and_is_counted(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = await servers.start(token=TOKEN)
    now = [100.0]
    server._refused_log.clock = lambda: now[0]  # a frozen clock: one line per second at most
    with caplog.at_level(logging.WARNING, logger="corral.http"):
        for token, scheme, path in [
            (None, "Bearer", "/metrics"),
            ("wrong", "Bearer", "/metrics"),
            (TOKEN + "x", "Bearer", "/metrics"),
            (TOKEN, "Basic", "/metrics"),
            ("", "Bearer", "/metrics"),
            (None, "Bearer", "/nothing-here"),  # 401, not 404: no page is revealed
        ]:
            status, text, headers = await get(url + path, token, scheme)
            assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="corral"')
            assert "Authorization: Bearer" in text
        lines = [r.getMessage() for r in caplog.records if r.name == "corral.http"]
        assert lines == ["HTTP request refused (no token; 401): GET /metrics from 127.0.0.1"]
        now[0] += 1.0
        await get(f"{url}/metrics", "again")
    lines = [r.getMessage() for r in caplog.records if r.name == "corral.http"]
    assert lines[1] == (
        "HTTP request refused (a wrong token; 401): GET /metrics from 127.0.0.1 "
        "(and 5 more like it since the last report)"
    )
    assert not any(TOKEN in line for line in lines), "the log never shows a token"
    for scheme in ("Bearer", "bearer"):
        status, text, _ = await get(f"{url}/metrics", TOKEN, scheme)
        assert status == 200
        assert samples(text)["corral_http_refused_total"] == 7
    assert server.refused == 7


async def test_a_port_in_use_is_a_config_error_and_leaves_nothing_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(HttpSettings("127.0.0.1", port, None), MetricsBoard)
        with pytest.raises(ConfigError) as caught:
            await server.start()
    assert str(caught.value) == (
        f"--http-port / CORRAL_HTTP_PORT: {port} is not allowed: a port free to listen on "
        f"(127.0.0.1:{port} is already in use)"
    )
    await server.stop()  # nothing to stop: fine
    # The port was not kept: a server starts on it now.
    again = HttpServer(HttpSettings("127.0.0.1", port, None), MetricsBoard)
    await again.start()
    await again.stop()
    await again.stop()


async def test_an_address_not_of_this_host_is_a_config_error_naming_the_bind() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    server = HttpServer(HttpSettings("192.0.2.1", free_port(), b"t"), MetricsBoard)
    with pytest.raises(ConfigError) as caught:
        await server.start()
    assert str(caught.value).startswith("--http-bind / CORRAL_HTTP_BIND: '192.0.2.1'")
    assert "cannot assign requested address" in str(caught.value)
