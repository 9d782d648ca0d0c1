"""Key files (``corral keygen``), the scheduler's key folder with its roles, and a worker's
or client's --key / --server-key: every mistake is one ConfigError line."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from actors import keys as keys_module
from actors.errors import ConfigError
from actors.keys import KeyRing, client_keys, keygen
from actors.scheduler.job import shown_worker


def role_key(folder: Path, role: str, name: str, secrets: Path) -> str:
    public, _ = keygen(name, secrets)
    (folder / role).mkdir(exist_ok=True)
    target = folder / role / public.name
    public.rename(target)
    return _public(target)


def _public(path: Path) -> str:
    key, _ = zmq.auth.load_certificate(path)
    return key.decode()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    keygen("scheduler", tmp_path / "keys")
    return tmp_path / "keys"


def test_keygen_writes_a_pair_the_secret_readable_by_its_owner_only(tmp_path: Path) -> None:
    public, secret = keygen("w1", tmp_path / "new")
    assert (public.name, secret.name) == ("w1.key", "w1.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert "secret-key" in secret.read_text()
    assert "secret-key" not in public.read_text()


def test_keygen_never_replaces_a_key(tmp_path: Path) -> None:
    keygen("w1", tmp_path)
    before = (tmp_path / "w1.key_secret").read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        keygen("w1", tmp_path)
    assert (tmp_path / "w1.key_secret").read_bytes() == before
    with pytest.raises(ConfigError, match="a file name"):
        keygen("../evil", tmp_path)


def test_the_folder_gives_each_key_its_role_and_refuses_unknown_ones(
    folder: Path, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    worker = role_key(folder, "workers", "w1", secrets)
    client = role_key(folder, "clients", "c1", secrets)
    admin = role_key(folder, "admins", "a1", secrets)
    stranger, _ = keygen("x", secrets)
    ring = KeyRing(folder)
    assert ring.authorize(worker) == "worker"
    assert ring.authorize(client) == "client"
    assert ring.authorize(admin) == "admin"
    assert ring.authorize(_public(stranger)) is None


def test_a_key_added_or_removed_while_it_runs_takes_effect_without_a_restart(
    folder: Path, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    first = role_key(folder, "workers", "w1", secrets)
    ring = KeyRing(folder)
    second = role_key(folder, "workers", "w2", secrets)
    os.utime(folder / "workers", (1, 1))  # a folder change the clock cannot hide
    assert ring.authorize(second) == "worker"
    (folder / "workers" / "w1.key").unlink()
    os.utime(folder / "workers", (2, 2))
    assert ring.authorize(first) is None


def test_a_key_in_two_roles_is_refused_at_start_up(folder: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    role_key(folder, "workers", "w1", secrets)
    (folder / "admins").mkdir()
    (folder / "admins" / "w1.key").write_bytes((folder / "workers" / "w1.key").read_bytes())
    with pytest.raises(ConfigError, match=r"w1\.key is listed both as worker and as admin"):
        KeyRing(folder)


def test_a_key_put_in_a_second_role_while_it_runs_never_holds_back_a_removal(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key being moved (cp to its new role, then rm) is in two roles for a while: the
    folders are still read, a removed key is refused at once, and the key in two roles is
    accepted in neither until it is listed once (before, the whole reload was skipped, so
    a revoked admin key kept its access for as long as the duplicate stayed)."""
    secrets = tmp_path / "secrets"
    client = role_key(folder, "clients", "c2", secrets)
    admin = role_key(folder, "admins", "ops", secrets)
    ring = KeyRing(folder)
    (folder / "admins" / "c2dup.key").write_bytes((folder / "clients" / "c2.key").read_bytes())
    (folder / "admins" / "ops.key").unlink()
    os.utime(folder / "admins", (1, 1))  # a folder change the clock cannot hide
    assert ring.authorize(admin) is None, "the removed key is refused at once"
    assert ring.authorize(client) is None, "in two roles: in neither"
    assert "c2dup.key is listed both as client and as admin" in caplog.text
    (folder / "clients" / "c2.key").unlink()  # the move finished
    os.utime(folder / "clients", (2, 2))
    assert ring.authorize(client) == "admin"


def test_a_folder_without_the_schedulers_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a folder of keys"):
        KeyRing(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="an existing key file"):
        KeyRing(tmp_path / "empty")


def test_a_secret_key_others_can_read_is_refused(folder: Path) -> None:
    os.chmod(folder / "scheduler.key_secret", 0o644)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        KeyRing(folder)


def test_client_keys_come_in_pairs_and_must_be_the_right_files(
    folder: Path, tmp_path: Path
) -> None:
    _, secret = keygen("c1", tmp_path)
    server = str(folder / "scheduler.key")
    assert client_keys("", "") is None
    keys = client_keys(str(secret), server)
    assert keys is not None
    assert keys.server == _public(folder / "scheduler.key").encode()
    with pytest.raises(ConfigError, match="--key and --server-key go together"):
        client_keys(str(secret), "")
    with pytest.raises(ConfigError, match="a secret key file"):
        client_keys(str(tmp_path / "c1.key"), server)  # the public half given as --key
    with pytest.raises(ConfigError, match="an existing key file"):
        client_keys(str(tmp_path / "nope.key_secret"), server)
    (tmp_path / "garbage.key_secret").write_text("not a key")
    os.chmod(tmp_path / "garbage.key_secret", 0o600)
    with pytest.raises(ConfigError, match="key file"):
        client_keys(str(tmp_path / "garbage.key_secret"), server)


def test_a_lease_bound_to_a_key_is_shown_by_its_workers_name() -> None:
    key = zmq.curve_keypair()[0].decode()
    assert shown_worker(f"w0@{key}") == "w0"
    assert shown_worker(f"me@host@{key}") == "me@host"
    assert shown_worker("me@host") == "me@host", "a name with @ and no key stays whole"
    assert shown_worker(None) is None


def test_a_handshake_costs_three_stats_not_a_look_at_every_key_file(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any peer that has the scheduler's public key may start handshakes, each asking
    ``authorize`` (twice); with 1,000 key files a look at every file cost ~6 ms of the
    scheduler's loop. It looks at the three folders' times; every file, once a second, in
    the watcher thread; a frame's ``current_role`` never looks at the disk at all."""
    secrets = tmp_path / "secrets"
    first = role_key(folder, "clients", "c1", secrets)
    ring = KeyRing(folder)
    here = threading.get_ident()
    looks = 0
    stamps = KeyRing._stamps

    def counted(self: KeyRing) -> tuple[tuple[str, float], ...]:
        nonlocal looks
        looks += threading.get_ident() == here  # not the watcher thread's looks
        return stamps(self)

    monkeypatch.setattr(KeyRing, "_stamps", counted)
    for _ in range(100):
        assert ring.authorize("an unknown key of forty characters.....") is None
        assert ring.current_role("an unknown key of forty characters.....") is None
    assert ring.authorize(first) == "client"
    assert ring.current_role(first) == "client"
    assert looks == 0, "no look at every file from the loop's thread"
    second = role_key(folder, "clients", "c2", secrets)
    os.utime(folder / "clients", (1, 1))
    assert ring.authorize(second) == "client", "a key added is seen at the next handshake"
    os.unlink(folder / "clients" / "c1.key")
    os.utime(folder / "clients", (2, 2))
    assert ring.authorize(first) is None, "a key removed too"
    # Rewritten in place (the folder's time does not change): seen within a second, by
    # the watcher thread.
    third, _ = keygen("c3", secrets)
    (folder / "clients" / "c2.key").write_bytes(third.read_bytes())
    os.utime(folder / "clients", (2, 2))
    deadline = time.monotonic() + 10 * keys_module.RECHECK_SECONDS
    while ring.current_role(_public(third)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ring.current_role(_public(third)) == "client"
    assert ring.current_role(second) is None
