"""The HTTP settings as the scheduler process uses them (``http_settings``: ``--http-port``
or its older name ``--metrics-port``, ``--http-bind`` or ``--metrics-addr``,
``--http-token-file``), checked before anything is opened. Apart from the server
(``actors.http.server``) so that a scheduler without HTTP reads them without importing
aiohttp (about a sixth of a scheduler's start-up)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from actors.config import SchedulerConfig, is_loopback, setting_name
from actors.errors import ConfigError

DEFAULT_BIND = "127.0.0.1"


@dataclass(frozen=True)
class HttpSettings:
    """Where to serve and the token to require (None: no token), checked."""

    host: str
    port: int
    token: bytes | None
    port_setting: str = "http_port"  # the field the port came from, for messages
    bind_setting: str = "http_bind"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def http_settings(config: SchedulerConfig) -> HttpSettings | None:
    """The HTTP settings of ``config`` (None: no HTTP server), the token read; raises
    ConfigError, before anything is opened, for a bad address, a non-loopback address
    without a token file, or a token file that is unreadable, empty or readable by others."""
    if config.http_port and config.metrics_port and config.http_port != config.metrics_port:
        raise ConfigError(
            setting_name("metrics_port"),
            config.metrics_port,
            f"unset, or --http-port's value ({config.http_port}): it is --http-port's older name",
        )
    port_setting = "http_port" if config.http_port else "metrics_port"
    port = config.http_port or config.metrics_port
    if port is None:
        return None
    older = not config.http_bind and config.metrics_addr != DEFAULT_BIND
    bind_setting = "metrics_addr" if older else "http_bind"
    if config.http_bind and config.metrics_addr not in (DEFAULT_BIND, config.http_bind):
        raise ConfigError(
            setting_name("metrics_addr"),
            config.metrics_addr,
            f"unset, or --http-bind's value ({config.http_bind!r}): it is --http-bind's older name",
        )
    given = config.http_bind or config.metrics_addr
    host = _host(given, bind_setting)
    token = None
    if config.http_token_file:
        token = read_token(config.http_token_file)
    elif not is_loopback(f"tcp://{host}:{port}"):
        raise ConfigError(
            setting_name(bind_setting),
            given,
            "a loopback address (127.0.0.1, ::1, localhost) without --http-token-file / "
            "CORRAL_HTTP_TOKEN_FILE: to serve HTTP to other hosts, give a file holding a "
            "bearer token (one line, chmod 600) that every request must carry",
        )
    return HttpSettings(host, port, token, port_setting, bind_setting)


def _host(text: str, setting: str) -> str:
    """An IP address (or ``localhost``) to listen on, without IPv6 brackets; no names
    looked up in DNS, which could hang the start or bind where nobody expects."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            setting_name(setting),
            text,
            "an IP address of this host to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
            "every interface, with --http-token-file)",
        ) from None
    return host


def read_token(path: str) -> bytes:
    """The bearer token in ``path``: one line of printable ASCII without spaces, in a file
    only its owner may read (the rule of ``scheduler.key_secret``); ConfigError otherwise."""
    setting = setting_name("http_token_file")
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read(4096)
    except OSError as exc:
        raise ConfigError(
            setting, path, f"a file corral can read ({exc.strerror or exc})"
        ) from None
    if mode & 0o077:
        raise ConfigError(setting, path, "readable by its owner only (chmod 600)")
    token = data.strip()
    if not token:
        raise ConfigError(setting, path, "a file holding a token (this one is empty)")
    if not all(0x21 <= byte <= 0x7E for byte in token):
        raise ConfigError(setting, path, "one line holding the token: printable ASCII, no spaces")
    return token
