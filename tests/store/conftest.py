"""The store factories the conformance suite runs against: one parameter per backend.

A factory opens an empty store and "restarts" one: the storage is kept, everything held in
the process is dropped (SQLite: close, then a new ``SqliteStore`` on the same file;
memory: close, then open the same ``MemoryStore`` object again; PostgreSQL: a new database
on the test server per storage, a new ``PostgresStore`` on it to restart). A new backend is
one more ``StoreFactory`` subclass in ``FACTORIES``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actors.scheduler.store.base import StoreBackend
from actors.scheduler.store.memory import MemoryStore
from actors.scheduler.store.postgres import PostgresStore
from actors.scheduler.store.sqlite import SqliteStore
from tests.helpers import postgres


class StoreFactory(abc.ABC):
    """Opens fresh stores for one test and closes every one it opened afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.opened: list[StoreBackend] = []

    async def open(self) -> StoreBackend:
        """A new, empty, open store (each call its own storage)."""
        store = self.new_storage()
        await store.open()
        self.opened.append(store)
        return store

    async def restart(self, store: StoreBackend) -> StoreBackend:
        """Close ``store`` and open its storage again, as a restarted scheduler would."""
        await store.close()
        again = self.same_storage(store)
        await again.open()
        self.opened.append(again)
        return again

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()  # idempotent by contract

    @abc.abstractmethod
    def new_storage(self) -> StoreBackend:
        """A backend over new, empty storage (not opened yet)."""

    @abc.abstractmethod
    def same_storage(self, store: StoreBackend) -> StoreBackend:
        """A backend over ``store``'s storage (not opened yet)."""


class SqliteFactory(StoreFactory):
    """SQLite on a real file; ``durability`` picks the commit path ("full": every commit
    in aiosqlite's thread; "normal": small commits inline on the event loop)."""

    durability = "full"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.files = 0

    def new_storage(self) -> StoreBackend:
        self.files += 1
        return SqliteStore(str(self.tmp_path / f"store-{self.files}.db"), self.durability)

    def same_storage(self, store: StoreBackend) -> StoreBackend:
        assert isinstance(store, SqliteStore)
        return SqliteStore(store.path, self.durability)


class SqliteNormalFactory(SqliteFactory):
    durability = "normal"


class MemoryFactory(StoreFactory):
    def new_storage(self) -> StoreBackend:
        return MemoryStore()

    def same_storage(self, store: StoreBackend) -> StoreBackend:
        return store


class PostgresFactory(StoreFactory):
    """PostgreSQL on the test server (``postgres_server``): each storage a new database,
    dropped after the test."""

    server = ""  # the server's admin DSN, set by the fixture

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.databases: list[str] = []

    def new_storage(self) -> StoreBackend:
        self.databases.append(postgres.create_database(self.server))
        return PostgresStore(self.databases[-1])

    def same_storage(self, store: StoreBackend) -> StoreBackend:
        assert isinstance(store, PostgresStore)
        return PostgresStore(store.dsn)

    async def close_all(self) -> None:
        await super().close_all()
        for dsn in self.databases:
            postgres.drop_database(self.server, dsn)


FACTORIES: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite": SqliteFactory,
    "sqlite-normal": SqliteNormalFactory,
    "memory": MemoryFactory,
    "postgres": PostgresFactory,
}


@pytest.fixture(params=list(FACTORIES))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    factory = FACTORIES[request.param](tmp_path)
    if isinstance(factory, PostgresFactory):  # only then: the server starts on first use
        factory.server = request.getfixturevalue("postgres_server")
    yield factory
    await factory.close_all()


@pytest.fixture
async def store(store_factory: StoreFactory) -> StoreBackend:
    """An open, empty store of the backend under test (closed by its factory)."""
    return await store_factory.open()
