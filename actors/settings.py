"""Settings read from flags over CORRAL_* environment variables over defaults, validated
by their msgspec types: ``load_settings`` builds a settings Struct and turns the first
problem into one ``ConfigError`` line naming the flag, the variable and what is allowed
(``setting_name``)."""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar, get_args

import msgspec
from msgspec import Meta

from actors.errors import ConfigError

S = TypeVar("S", bound=msgspec.Struct)

_MSGSPEC_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$\.(?P<field>\w+)`)?$", re.S)


def setting_name(field: str) -> str:
    """How users spell a setting: its flag and its environment variable."""
    return f"--{field.replace('_', '-')} / CORRAL_{field.upper()}"


def load_settings(
    cls: type[S],
    overrides: dict[str, object],
    normalize: dict[str, Any] | None = None,
) -> S:
    """``cls`` from its defaults, the ``CORRAL_<FIELD>`` variables and the non-None
    ``overrides``, in rising precedence; strings are converted by msgspec (so "5" is a
    float for a float field). A value that fails a field's type or constraint raises
    ConfigError with the setting's names, the value as given, and what is allowed."""
    normalize = normalize or {}
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(cls):
        raw = os.environ.get(f"CORRAL_{field.name.upper()}")
        if raw:  # an empty variable counts as unset
            values[field.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, fix in normalize.items():
        if isinstance(values.get(key), str):
            values[key] = fix(values[key])
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_ERROR.match(str(exc))
        name = match.group("field") if match else None
        if name is None:
            raise ConfigError("settings", values, str(exc)) from None
        raise ConfigError(
            setting_name(name), values.get(name), _allowed(cls, name, str(exc))
        ) from None


def _allowed(cls: type[msgspec.Struct], field: str, error: str) -> str:
    """What a field allows, in words, from its type and its ``Meta`` description."""
    for info in msgspec.structs.fields(cls):
        if info.name != field:
            continue
        choices = _literal_choices(info.type)
        if choices:
            return "one of " + ", ".join(choices) + (" (any case)" if field == "log_level" else "")
        described = _description(info.type)
        if described:
            return described + (
                " (or unset: off)" if field in ("metrics_port", "http_port") else ""
            )
    return error.split(" - at ")[0].replace("Expected", "expected")


def _literal_choices(tp: Any) -> list[str]:
    args = get_args(tp)
    if args and all(isinstance(a, str) for a in args):
        return list(args)
    return []


def _description(tp: Any) -> str | None:
    for arg in get_args(tp):
        if isinstance(arg, Meta) and arg.description:
            return arg.description
        nested = _description(arg)
        if nested:
            return nested
    return None
