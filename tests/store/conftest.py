"""Both store backends, for one suite: SQLite in a temp folder and PostgreSQL on this machine.

PostgreSQL must be running on 127.0.0.1:5432 with the `postgres` user (trust auth), as on
this project's machines; each test gets a database of its own, dropped at the end. Without
PostgreSQL the PostgreSQL half fails in CI and is skipped elsewhere, saying how to start it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from jupyter_datastore.store import Store, open_store

ADMIN_URL = os.environ.get("JDS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


async def create_database() -> str:
    """A fresh database; its URL."""
    name = f"jds_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        message = f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); {START_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty store of each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[Callable[[], Store]]:
    """Started stores on the same data (a second one is the same store reopened); all closed
    at the end."""
    stores: list[Store] = []

    def make() -> Store:
        store = open_store(store_url)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
