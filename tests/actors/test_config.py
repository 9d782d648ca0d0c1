"""Settings: one validation for flags and CORRAL_* variables, messages that name the setting,
the value and what is allowed. (tests/e2e/test_startup.py runs the same through the CLI.)"""

from __future__ import annotations

import pytest

from actors.cli.demo import DEMO_TIMINGS
from actors.config import LogConfig, SchedulerConfig, redact_dsn
from actors.errors import ConfigError
from bench.harness import FAST_TIMINGS


def flags(args: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["--lease", "1"]`` as from_env keyword overrides."""
    return {
        args[i].removeprefix("--").replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)
    }


def test_defaults_are_valid_and_power_loss_safe() -> None:
    config = SchedulerConfig.from_env()
    assert config.durability == "full"
    assert config.metrics_port is None


@pytest.mark.parametrize("timings", [FAST_TIMINGS, DEMO_TIMINGS], ids=["tests", "demo"])
def test_the_timings_the_project_uses_are_accepted(timings: tuple[str, ...]) -> None:
    SchedulerConfig.from_env(**flags(timings))


def test_flags_win_over_variables_and_strings_are_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_LEASE", "8")
    monkeypatch.setenv("CORRAL_METRICS_PORT", "9100")
    monkeypatch.setenv("CORRAL_DURABILITY", "normal")
    assert SchedulerConfig.from_env().lease == 8.0
    config = SchedulerConfig.from_env(lease="9", metrics_port=None)
    assert (config.lease, config.metrics_port, config.durability) == (9.0, 9100, "normal")


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_METRICS_PORT", "")
    assert SchedulerConfig.from_env().metrics_port is None


@pytest.mark.parametrize(
    ("env", "overrides", "setting", "allowed"),
    [
        ({"CORRAL_LEASE": "abc"}, {}, "--lease / CORRAL_LEASE", "seconds > 0"),
        ({"CORRAL_LEASE": "-1"}, {}, "--lease / CORRAL_LEASE", "seconds > 0"),
        ({"CORRAL_LEASE": "inf"}, {}, "--lease / CORRAL_LEASE", "finite"),
        ({"CORRAL_METRICS_PORT": "abc"}, {}, "--metrics-port", "1 to 65535"),
        ({}, {"metrics_port": "0"}, "--metrics-port", "1 to 65535"),
        ({"CORRAL_STRATEGY": "bogus"}, {}, "--strategy / CORRAL_STRATEGY", "round-robin"),
        ({"CORRAL_DURABILITY": "bogus"}, {}, "--durability", "one of full, normal"),
        ({}, {"lease_grace": "-1"}, "--lease-grace", ">= 0"),
        ({}, {"heartbeat_interval": "10", "lease": "2"}, "--lease", "2 x --heartbeat-interval"),
        ({}, {"heartbeat_interval": "1", "lease": "1.5"}, "--lease", "one late heartbeat"),
        ({}, {"suspect_after": "6"}, "--suspect-after", "at most --lease (5 s)"),
        ({}, {"suspect_after": "1"}, "--suspect-after", "more than --heartbeat-interval"),
        ({}, {"backoff_factor": "0.5"}, "--backoff-factor", ">= 1"),
        ({}, {"backoff_base": "10", "backoff_cap": "5"}, "--backoff-cap", "--backoff-base"),
        ({}, {"queue_weights": "heavy=-1"}, "--queue-weights", "WEIGHT > 0"),
        ({}, {"queue_weights": "bad name=1"}, "--queue-weights", "is not a queue name"),
        ({}, {"queue_weights": "a=1,a=2"}, "--queue-weights", "weighed twice"),
        ({}, {"dag_resolver": "http://x"}, "--dag-resolver", "tcp://HOST:PORT, ipc://"),
        ({}, {"db": " "}, "--db", "an SQLite file path"),
        ({}, {"bind": "tcp://127.0.0.1:0"}, "--bind", "PORT 1 to 65535"),
        ({}, {"dag_resolver": "tcp://127.0.0.1:x"}, "--dag-resolver", "PORT 1 to 65535"),
        ({"CORRAL_DB": ""}, {"db": ""}, "--db", "a file path"),
        ({}, {"retention": "99999999999d"}, "--retention", "at most 36500d"),
        ({"CORRAL_FAILED_RETENTION": "36501d"}, {}, "--failed-retention", "or off"),
        ({}, {"retention": "1e400s"}, "--retention", "a duration"),
    ],
)
def test_a_value_that_is_not_allowed_names_setting_value_and_rule(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    overrides: dict[str, str],
    setting: str,
    allowed: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        SchedulerConfig.from_env(**overrides)
    message = str(raised.value)
    assert message.startswith(setting), message
    assert allowed in message, message
    given = {**env, **overrides}
    shown = [v for v in given.values() if v and (repr(v) in message or str(float(v)) in message)]
    assert shown or "''" in message, f"the value given is named: {message}"


@pytest.mark.parametrize("level", ["info", "Info", "INFO", "debug", "warning", "error"])
def test_log_levels_are_accepted_in_any_case(monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    monkeypatch.setenv("CORRAL_LOG_LEVEL", level)
    assert LogConfig.from_env().log_level == level.upper()
    monkeypatch.delenv("CORRAL_LOG_LEVEL")
    assert LogConfig.from_env(log_level=level).log_level == level.upper()


def test_a_bad_log_setting_names_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match="one of DEBUG, INFO, WARNING, ERROR"):
        LogConfig.from_env(log_level="loud")
    with pytest.raises(ConfigError, match="--log-format / CORRAL_LOG_FORMAT: 'xml'"):
        LogConfig.from_env(log_format="xml")


# ------------------------------------------------------------------ --db: SQLite or PostgreSQL


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://u:hunter2@h:99999/db", "bad port '99999'"),
        ("postgresql://u:hunter2@h:abc/db", "bad port 'abc'"),
        ("postgres://u:hunter2@:5432/db", "no host before the port"),
        ("postgresql://u:hunter2@h/db/more", "one database name after the host"),
        ("postgresql://u:hunter2@h/db#frag", "unexpected #frag"),
    ],
)
def test_a_malformed_postgresql_dsn_is_refused_naming_the_problem_not_the_password(
    dsn: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        SchedulerConfig.from_env(db=dsn)
    message = str(raised.value)
    assert message.startswith("--db / CORRAL_DB: 'postgres"), message
    assert problem in message, message
    assert "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://corral:pw@db.example:5432/corral",
        "POSTGRES://corral@10.0.0.5/corral",
        "postgresql://corral@[::1]:5433/corral?sslmode=require",
        "postgresql://corral@a:5432,b:5433/corral",
        "postgresql:///corral?host=/var/run/postgresql",
    ],
)
def test_a_postgresql_dsn_picks_the_postgresql_store(dsn: str) -> None:
    from actors.scheduler.brain import store_for
    from actors.scheduler.store.postgres import PostgresStore

    store = store_for(SchedulerConfig.from_env(db=dsn))
    assert isinstance(store, PostgresStore)
    assert ":pw@" not in store.where


@pytest.mark.parametrize("path", ["corral.db", "/var/lib/corral/c.db", "postgresql.db", "pg:x"])
def test_anything_else_is_an_sqlite_file(path: str) -> None:
    from actors.scheduler.brain import store_for
    from actors.scheduler.store.sqlite import SqliteStore

    store = store_for(SchedulerConfig.from_env(db=path))
    assert isinstance(store, SqliteStore)
    assert store.path == path


def test_durability_normal_is_for_sqlite_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_DURABILITY", "normal")
    with pytest.raises(ConfigError, match=r"--durability / CORRAL_DURABILITY: 'normal'.*SQLite"):
        SchedulerConfig.from_env(db="postgresql://corral@h/corral")
    assert SchedulerConfig.from_env(db="c.db").durability == "normal"


def test_a_dsn_shown_anywhere_has_no_password() -> None:
    assert redact_dsn("postgresql://u:p%40ss@h:1/db?password=x&sslmode=require") == (
        "postgresql://u:***@h:1/db?password=***&sslmode=require"
    )
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_dsn("./corral.db") == "./corral.db"


# ------------------------------------------------------------------ several schedulers

PG = "postgresql://corral@h/corral"


@pytest.mark.parametrize(
    ("overrides", "setting", "allowed"),
    [
        ({"leader_ttl": "0.2"}, "--leader-ttl / CORRAL_LEADER_TTL", "at least 0.5 s"),
        ({"leader_ttl": "-1"}, "--leader-ttl / CORRAL_LEADER_TTL", "seconds > 0"),
        ({"db": PG, "bind": "tcp://*:5555"}, "--bind / CORRAL_BIND", "--advertise"),
        ({"db": PG, "bind": "tcp://0.0.0.0:5555"}, "--bind / CORRAL_BIND", "--advertise"),
        ({"advertise": "tcp://0.0.0.0:5555"}, "--advertise / CORRAL_ADVERTISE", "wildcard"),
        ({"advertise": "tcp://a:99999"}, "--advertise / CORRAL_ADVERTISE", "PORT 1 to 65535"),
        ({"advertise": "a:5555"}, "--advertise / CORRAL_ADVERTISE", "tcp://HOST:PORT"),
        ({"advertise": "tcp://b:5555"}, "--advertise / CORRAL_ADVERTISE", "PostgreSQL only"),
    ],
)
def test_a_bad_leadership_setting_names_the_setting_and_the_rule(
    overrides: dict[str, str], setting: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        SchedulerConfig.from_env(**overrides)
    message = str(raised.value)
    assert message.startswith(setting), message
    assert allowed in message, message


def test_a_wildcard_bind_is_fine_with_an_advertised_address_or_with_sqlite() -> None:
    config = SchedulerConfig.from_env(
        db=PG, bind="tcp://*:5555", advertise="tcp://b:5555", insecure=True
    )
    assert (config.advertise, config.leader_ttl) == ("tcp://b:5555", 2.0)
    assert SchedulerConfig.from_env(bind="tcp://*:5555", keys="/k").advertise == ""


@pytest.mark.parametrize(
    "bind", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.1.2.3:5555", "tcp://db.example:1"]
)
def test_an_address_other_hosts_reach_needs_keys_or_insecure(bind: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SchedulerConfig.from_env(bind=bind)
    message = str(raised.value)
    assert message.startswith("--bind / CORRAL_BIND"), message
    assert "--keys DIR" in message, message
    assert "--insecure" in message, message
    assert SchedulerConfig.from_env(bind=bind, keys="/etc/corral/keys").keys
    assert SchedulerConfig.from_env(bind=bind, insecure=True).insecure


@pytest.mark.parametrize(
    "bind", ["tcp://127.0.0.1:5555", "tcp://127.1.2.3:1", "tcp://localhost:1", "ipc:///tmp/s"]
)
def test_loopback_needs_no_keys(bind: str) -> None:
    assert SchedulerConfig.from_env(bind=bind).keys == ""


def test_insecure_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_INSECURE", "1")
    assert SchedulerConfig.from_env(bind="tcp://0.0.0.0:5555").insecure


def test_the_queue_names_weights_accept_are_the_protocols() -> None:
    import msgspec

    from transport import protocol as wire

    for name in ("default", "a.b:c-d_1", "q" * 64, "q" * 65, "a b", "", "é", "a/b"):
        try:
            msgspec.convert(name, wire.QueueName)
            carried = True
        except msgspec.ValidationError:
            carried = False
        try:
            SchedulerConfig(queue_weights=f"{name}=1").weights()
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == carried, name
