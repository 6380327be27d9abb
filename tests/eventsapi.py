"""A subscriber of `/api/events/subscribe` for tests: reads every frame as it comes."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import websockets


class EventSocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[Any] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, base_url: str, token: str, **query: Any) -> EventSocket:
        params = urllib.parse.urlencode({"token": token, **query})
        url = base_url.replace("http", "ws", 1) + "/api/events/subscribe?" + params
        return cls(await websockets.connect(url))

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events received, batched ones unpacked, control messages left out."""
        return [
            item
            for frame in self.frames
            for item in (frame if isinstance(frame, list) else [frame])
            if "__id__" in item
        ]

    def of(self, schema_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["schema_id"] == schema_id]

    async def send(self, message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
