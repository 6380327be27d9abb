"""Store outages told once: a `store_fault` event when one kind of write starts failing, and
one more (`recovered: true`) when it succeeds again, never one per retry.

Each writer that keeps going through an outage (execution records, the event log, a
document's save bookkeeping) owns one `FaultReport`; a room's update log reports its own,
since it also tells the room's peers (rooms/room.py).
"""

from __future__ import annotations

import logging

from .catalog import STORE_FAULT, Emit

__all__ = ["FaultReport"]


class FaultReport:
    def __init__(
        self,
        emit: Emit,
        *,
        what: str,
        subject: str,
        log: logging.Logger,
        room_id: str | None = None,
    ) -> None:
        self.emit = emit
        self.what = what
        """The event's `what` (see events/schemas/store_fault.json)."""
        self.subject = subject
        """What cannot be stored, for the log: "execution records", say."""
        self.log = log
        self.room_id = room_id
        self.fault: str | None = None
        """The error of the outage under way, if one is."""
        self.attempts = 0
        self._operation = ""

    def failed(self, operation: str, exc: Exception) -> None:
        """A write (`operation`, a Store method) failed: the first failure of a run is told."""
        self.attempts += 1
        if self.fault is not None:
            self.log.debug("%s still cannot be stored: %s", self.subject, exc)
            return
        self.fault, self._operation = str(exc) or type(exc).__name__, operation
        self.log.error("the store cannot take %s; retrying: %s", self.subject, self.fault)
        self._event(recovered=False)

    def succeeded(self) -> None:
        """A write went through: the end of an outage, if one was under way, is told."""
        if self.fault is None:
            return
        self.log.warning("the store takes %s again (%d failed tries)", self.subject, self.attempts)
        self._event(recovered=True)
        self.fault, self.attempts = None, 0

    def _event(self, *, recovered: bool) -> None:
        data = {
            "operation": self._operation,
            "what": self.what,
            "detail": self.fault or "",
            "room_id": self.room_id,
            "recovered": recovered,
            "attempts": max(self.attempts, 1),
        }
        self.emit(STORE_FAULT, data)
