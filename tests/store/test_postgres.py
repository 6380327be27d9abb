"""What only the PostgreSQL store has: its server, its URLs, schemas and several servers."""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import Doc, Text

from jupyter_datastore.errors import BadRequest, StoreCorrupt, StoreError
from jupyter_datastore.store import open_store
from jupyter_datastore.store.postgres import PostgresStore

from .conftest import admin


def one_update(text: str = "kept") -> bytes:
    doc: Doc = Doc()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


def test_urls_and_the_location_without_password() -> None:
    store = open_store("postgresql://me:secret@db.example:5433/jds?schema=team&sslmode=prefer")
    assert isinstance(store, PostgresStore) and store.schema == "team"
    assert store.location() == "postgresql://me@db.example:5433/jds?schema=team"
    assert open_store("postgres://[::1]/jds").location() == "postgresql://[::1]/jds"
    with pytest.raises(BadRequest, match=r"postgresql://me@db:99999/jds") as caught:
        open_store("postgresql://me:secret@db:99999/jds")
    assert "secret" not in str(caught.value)


async def test_a_server_that_is_not_there_is_a_clear_error_at_start() -> None:
    store = open_store("postgresql://postgres:hunter2@127.0.0.1:1/nothing?schema=s")
    with pytest.raises(StoreError) as caught:
        await store.start()
    message = caught.value.detail
    assert message.startswith(
        "cannot use the PostgreSQL store at postgresql://postgres@127.0.0.1:1"
    )
    assert "is the server running" in message and "hunter2" not in message
    assert type(caught.value) is StoreError  # worth retrying, not corrupt
    with pytest.raises(StoreError, match="not running"):
        await store.load("d")


async def test_a_database_that_does_not_exist_is_a_clear_error(
    postgres_session_database: str,
) -> None:
    store = open_store(postgres_session_database + "_missing")
    with pytest.raises(StoreError, match=r"cannot use the PostgreSQL store.*does not exist"):
        await store.start()


async def test_a_schema_from_the_future_is_refused(postgres_url: str) -> None:
    store = open_store(postgres_url)
    await store.start()
    await store.close()
    db = await admin(postgres_url)
    try:
        await db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    finally:
        await db.close()
    again = open_store(postgres_url)
    with pytest.raises(StoreCorrupt, match=r"has store schema 99; this version .* reads schema 3"):
        await again.start()


@pytest.mark.parametrize("schema", ["", "?schema=team"])
async def test_servers_starting_at_once_make_one_store(postgres_url: str, schema: str) -> None:
    stores = [open_store(postgres_url + schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        assert len({store.session_id for store in stores}) == 1
        await stores[0].append("d", 1, one_update())
        stored = await stores[3].load("d")
        assert stored is not None and stored.last_seq == 1
    finally:
        for store in stores:
            await store.close()


async def test_schemas_keep_stores_apart_in_one_database(postgres_url: str) -> None:
    team = open_store(postgres_url + "?schema=team")
    other = open_store(postgres_url + '?schema=Other "one"')
    await team.start()
    await other.start()
    try:
        await team.append("d", 1, one_update())
        assert await other.load("d") is None and await other.documents() == []
        assert team.session_id != other.session_id
        assert (await team.size_on_disk() or 0) > 0
        db = await admin(postgres_url)
        try:
            rows = await db.fetch(
                "SELECT table_schema, COUNT(*) FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                " GROUP BY table_schema ORDER BY table_schema"
            )
        finally:
            await db.close()
        assert [tuple(r) for r in rows] == [('Other "one"', 9), ("team", 9)]
    finally:
        await team.close()
        await other.close()


async def test_a_connection_lost_mid_call_is_a_store_error_and_the_next_call_reconnects(
    postgres_url: str,
) -> None:
    store = open_store(postgres_url)
    await store.start()
    locker = await admin(postgres_url)
    try:
        await store.append("d", 1, one_update())
        # Hold the documents table, so that a load waits on the server; then cut it off.
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE")
        loading = asyncio.ensure_future(store.load("d"))
        waiting = (
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'jupyter-datastore'"
            " AND wait_event_type = 'Lock'"
        )
        while (pid := await locker.fetchval(waiting)) is None:
            assert not loading.done()
        await locker.execute("SELECT pg_terminate_backend($1, 5000)", pid)
        with pytest.raises(StoreError) as caught:  # the store's error, never the driver's
            await loading
        assert caught.value.detail.startswith(store.location() + ": ")
        await transaction.rollback()
        await store.append("d", 2, one_update("more"))
        stored = await store.load("d")
        assert stored is not None and stored.last_seq == 2
    finally:
        await locker.close()
        await store.close()
    with pytest.raises(StoreError, match="not running"):
        await store.load("d")


async def test_a_document_deleted_by_another_server_starts_over(
    postgres_schema_url: str,
) -> None:
    first, second = open_store(postgres_schema_url), open_store(postgres_schema_url)
    await first.start()
    await second.start()
    try:
        await first.append("d", 1, one_update())  # its id is now known to `first`
        await second.delete_document("d")
        await first.append("d", 1, one_update("new"))
        stored = await second.load("d")
        assert stored is not None and [seq for seq, _ in stored.updates] == [1]
    finally:
        await first.close()
        await second.close()


async def test_damaged_rows_are_reported_and_refused(postgres_schema_url: str) -> None:
    store = open_store(postgres_schema_url)
    await store.start()
    try:
        await store.append("d", 1, one_update())
        assert await store.check_integrity() == []
        database, schema = postgres_schema_url.split("?schema=")
        db = await admin(database)
        try:
            await db.execute(
                f"INSERT INTO {schema}.updates (doc, seq, data, codec) VALUES (1, 0, '', 7)"
            )
        finally:
            await db.close()
        assert await store.check_integrity() == [
            "1 update rows have a sequence number below 1",
            "1 update rows have an unknown encoding",
        ]
        with pytest.raises(StoreCorrupt, match="unknown encoding 7"):
            await store.load("d")
    finally:
        await store.close()
