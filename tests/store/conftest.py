"""Both store backends, for one suite: SQLite in a temp folder and PostgreSQL on this machine.

PostgreSQL must run on 127.0.0.1:5432 with the `postgres` user and trust auth, as on this
project's machines (or `JDS_TEST_POSTGRES` names another admin URL). Each test of the
shared suite gets a schema of its own (`?schema=`) in one database made for the session;
those of PostgreSQL alone get a fresh database each; all are dropped at the end. Without
PostgreSQL the PostgreSQL half fails in CI (`CI=true`) and is skipped elsewhere, saying how
to start it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from jupyter_datastore.store import Store, open_store
from jupyter_datastore.store import sql as sql_module

ADMIN_URL = os.environ.get("JDS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
    " (Debian; install it with `apt-get install postgresql` and allow the postgres user in with"
    " trust auth on 127.0.0.1), or set JDS_TEST_POSTGRES to an admin URL of another server"
)

MakeStore = Callable[[], Store]


async def admin(url: str = ADMIN_URL) -> asyncpg.Connection:
    """A connection to the test server; fails in CI, skips elsewhere, if there is none."""
    try:
        return await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
        message = f"PostgreSQL is not reachable at {url} ({exc}); {START_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


async def create_database() -> str:
    """A fresh, empty database; its URL."""
    name = f"jds_test_{uuid.uuid4().hex[:12]}"
    db = await admin()
    try:
        await db.execute(f'CREATE DATABASE "{name}"')
    finally:
        await db.close()
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    db = await admin()
    try:
        await db.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await db.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh PostgreSQL database, dropped at the end."""
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    """A database for the whole session, dropped at the end (creating one takes 0.2 s)."""
    url = asyncio.run(create_database())
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
def postgres_schema_url(postgres_session_database: str) -> str:
    """The URL of a fresh PostgreSQL store in a schema of its own (made at its start)."""
    return f"{postgres_session_database}?schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each backend: a file, or a schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[MakeStore]:
    """Makes stores on the same data (a second one is the same store reopened, or another
    server on it); all closed at the end."""
    stores: list[Store] = []

    def make() -> Store:
        store = open_store(store_url)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


class Clock:
    """The stores' clock: rows are stamped with the time the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replaces the `time` module the stores read the time from (and only theirs)."""
    fake = Clock(1_800_000_000.0)  # a whole minute
    monkeypatch.setattr(sql_module, "time", fake)
    return fake
