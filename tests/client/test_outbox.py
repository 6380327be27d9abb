"""The client's outbox: bounded while a connection stalls, and nothing lost or reordered."""

from __future__ import annotations

from pycrdt import Doc, Text

from jupyter_datastore.client.errors import ServerError, error_from_close, retriable
from jupyter_datastore.client.outbox import Outbox
from jupyter_datastore.protocol.messages import (
    SyncUpdate,
    parse_message,
    save_request,
)


async def drain(outbox: Outbox) -> list[bytes]:
    return [await outbox.get() for _ in range(len(outbox))]


async def test_a_stalled_connection_holds_a_bounded_number_of_messages() -> None:
    doc: Doc = Doc()
    text = doc.get("source", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    outbox = Outbox(limit=50)
    for n in range(5000):  # a user typing on while nothing is sent
        text += f"{n};"
        outbox.put_update(updates[-1])
        if n == 2500:
            outbox.put(save_request(7))
    assert len(outbox) <= 51
    messages = await drain(outbox)
    # What arrives is every edit, and the save request after the edits made before it.
    replica: Doc = Doc()
    replica_text = replica.get("source", type=Text)
    saw_save = False
    for message in messages:
        if message == save_request(7):
            saw_save = True
            assert str(replica_text).endswith("2500;")
            continue
        parsed = parse_message(message)
        assert isinstance(parsed, SyncUpdate)
        replica.apply_update(parsed.update)
    assert saw_save
    assert str(replica_text) == str(text)


async def test_an_outbox_under_its_limit_sends_each_update_as_it_came() -> None:
    outbox = Outbox(limit=10)
    for update in (b"\x01", b"\x02"):
        outbox.put_update(update)
    assert len(await drain(outbox)) == 2


def test_a_store_outage_is_worth_retrying() -> None:
    error = error_from_close(4503, '{"error": "store_unavailable", "detail": "disk full"}')
    assert isinstance(error, ServerError) and retriable(error)
    assert "disk full" in str(error)
