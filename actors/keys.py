"""Key files and roles (issue 16): ``corral keygen``, the scheduler's key folder, and the
key pair a worker or client presents.

Files are ZeroMQ's certificate format, as ``zmq.auth.create_certificates`` writes them:
``NAME.key`` holds a public key, ``NAME.key_secret`` the pair (readable by its owner
only). The scheduler's folder (``--keys DIR``) holds its own pair,
``scheduler.key_secret``, and the public keys it accepts, one folder per role:

    DIR/workers/*.key   may say hello as a worker and report on the leases granted to it
    DIR/clients/*.key   may submit, and read, wait for and cancel the jobs it submitted
    DIR/admins/*.key    may do everything

The role folders are read again whenever a key file in them changes: checked at each new
connection's handshake, at most a second late for the frames of connections already made
(a thread of its own looks at every key file once a second, so ``current_role``, asked on
every frame, is a dictionary lookup that never waits for the disk: a removed key's
connections are refused from then on), and at once on SIGHUP (``reload_all``). Adding or
removing a key needs no restart. A key listed under two roles is refused at start-up;
appearing later, it keeps the roles read before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import zmq.auth

from actors.errors import ConfigError
from transport import ClientKeys, ServerKeys

log = logging.getLogger("corral.keys")

ROLES = {"workers": "worker", "clients": "client", "admins": "admin"}
SCHEDULER_KEY = "scheduler"
# How stale ``KeyRing.current_role`` may be: the watcher thread looks once a second.
RECHECK_SECONDS = 1.0

_rings: weakref.WeakSet[KeyRing] = weakref.WeakSet()
_watcher: threading.Thread | None = None
_watcher_lock = threading.Lock()


def reload_all() -> None:
    """Read every key folder of this process again now (the scheduler's SIGHUP)."""
    for ring in list(_rings):
        ring.refresh()


def _watch() -> None:
    """Once a second, every key folder's files looked at, off the event loop."""
    while True:
        time.sleep(RECHECK_SECONDS)
        for ring in list(_rings):
            try:
                ring.refresh()
            except Exception:  # a folder gone or unreadable: the roles read before stay
                log.exception("key folder %s not read", ring.folder)


def _watch_rings(ring: KeyRing) -> None:
    global _watcher
    with _watcher_lock:
        _rings.add(ring)
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, name="corral-keys", daemon=True)
            _watcher.start()


def keygen(name: str, folder: Path) -> tuple[Path, Path]:
    """Write ``folder/name.key`` and ``folder/name.key_secret`` (mode 0600); refuses to
    replace existing files. ConfigError (one line) on any problem."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError("NAME", name, "a file name: no '/', not starting with '.'")
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ConfigError("NAME", name, f"a new name: {path} exists already (not replaced)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _private_files():
            zmq.auth.create_certificates(folder, name)
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
    except OSError as exc:
        raise ConfigError("--dir", str(folder), f"a folder corral can write ({exc})") from None
    return public, secret


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files created inside are never readable by others, not even for a moment."""
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


def _load(path: Path, setting: str, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(setting, str(path), "an existing key file (see `corral keygen`)")
    try:
        public, private = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(setting, str(path), f"a key file of `corral keygen` ({exc})") from None
    if secret and private is None:
        raise ConfigError(setting, str(path), "a secret key file (NAME.key_secret)")
    if secret and path.stat().st_mode & 0o077:
        raise ConfigError(setting, str(path), "readable by its owner only (chmod 600)")
    return public, private


class KeyRing:
    """The scheduler's key folder: its pair and the accepted public keys by role."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not folder.is_dir():
            raise ConfigError("--keys", str(folder), "a folder of keys (see `corral keygen`)")
        public, secret = _load(folder / f"{SCHEDULER_KEY}.key_secret", "--keys", secret=True)
        assert secret is not None
        self.public, self.secret = public, secret
        self._stamp: tuple[tuple[str, float], ...] = ()
        self._folders: tuple[float, ...] = ()
        self._lock = threading.Lock()  # one reading of the folders at a time
        self.roles: dict[str, str] = {}
        conflict = self.reload()
        if conflict:
            raise ConfigError("--keys", str(folder), f"one role per key ({conflict})")
        _watch_rings(self)

    def server_keys(self) -> ServerKeys:
        return ServerKeys(self.public, self.secret, self.authorize, self.current_role)

    def authorize(self, key: str) -> str | None:
        """The role of a public key (Z85), None for a key it does not know; asked at every
        handshake, also by peers with no key of ours, so it costs three stats: a key file
        added or removed changes its folder's time and is seen at once, one rewritten in
        place within a second (the watcher thread's look at every file)."""
        if self._folders != self._folder_stamps():
            self.refresh()
        return self.current_role(key)

    def current_role(self, key: str) -> str | None:
        """``authorize`` as the folders were at most a second ago: asked on every frame,
        so a lookup only (the watcher thread reads the folders)."""
        return self.roles.get(key)

    def refresh(self) -> None:
        """Read the role folders again if a key file in them changed (from the watcher
        thread, a handshake or SIGHUP: one at a time)."""
        with self._lock:
            stamp = self._stamps()
            if self._stamp != stamp:
                conflict = self.reload()
                if conflict:  # applied all the same: a removal must take effect at once
                    log.error(
                        "keys in %s: %s; that key is accepted in no role until it is listed in one",
                        self.folder,
                        conflict,
                    )

    def _folder_stamps(self) -> tuple[float, ...]:
        stamps: list[float] = []
        for sub in ROLES:
            try:
                stamps.append((self.folder / sub).stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        return tuple(stamps)

    def _stamps(self) -> tuple[tuple[str, float], ...]:
        """Every role folder's and key file's modification time: a key copied over an
        existing file changes the file, not its folder."""
        stamps: list[tuple[str, float]] = []
        for sub in ROLES:
            folder = self.folder / sub
            try:
                stamps.append((sub, folder.stat().st_mtime))
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.endswith(".key"):
                            stamps.append((entry.path, entry.stat().st_mtime))
            except OSError:
                stamps.append((sub, 0.0))
        return tuple(sorted(stamps))

    def reload(self) -> str:
        """Read the role folders and take what they say, but for a key listed in two roles
        (a key being moved with cp, then rm): accepted in neither until it is listed once,
        never kept in the role it had, and never a reason to keep a removed key. Returns a
        description of such conflicts, or ""."""
        stamp, folders = self._stamps(), self._folder_stamps()
        roles: dict[str, str] = {}
        conflicts: dict[str, str] = {}  # key -> what is wrong with it
        for sub, role in ROLES.items():
            for path in sorted((self.folder / sub).glob("*.key")):
                try:
                    public, _ = zmq.auth.load_certificate(path)
                except (OSError, ValueError) as exc:
                    log.error("ignoring key file %s: %s", path, exc)
                    continue
                key = public.decode("ascii")
                if roles.get(key, role) != role:
                    conflicts[key] = f"{path.name} is listed both as {roles[key]} and as {role}"
                roles[key] = role
        for key in conflicts:
            del roles[key]
        self.roles, self._stamp, self._folders = roles, stamp, folders
        return "; ".join(conflicts.values())


def scheduler_keys(folder: str) -> ServerKeys | None:
    """The scheduler's CURVE keys from ``--keys DIR`` ("": none)."""
    return KeyRing(Path(folder)).server_keys() if folder else None


def client_keys(key: str, server_key: str) -> ClientKeys | None:
    """A worker's or client's keys from ``--key FILE`` (its .key_secret) and
    ``--server-key FILE`` (the scheduler's .key): both or neither."""
    if not key and not server_key:
        return None
    if not key or not server_key:
        missing = "--key / CORRAL_KEY" if not key else "--server-key / CORRAL_SERVER_KEY"
        raise ConfigError(missing, "", "given too: --key and --server-key go together")
    public, secret = _load(Path(key), "--key / CORRAL_KEY", secret=True)
    assert secret is not None
    server, _ = _load(Path(server_key), "--server-key / CORRAL_SERVER_KEY", secret=False)
    return ClientKeys(public, secret, server)
