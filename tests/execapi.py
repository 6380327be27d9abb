"""A small client of the executions API for tests, and ways to look into a notebook's Y doc."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from pycrdt import Array, Doc, Map

FINISHED = {"ok", "error", "cancelled", "interrupted", "lost"}


class ExecApi:
    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"token {token}"}, timeout=30
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def run(self, path: str, *cell_ids: str, **extra: Any) -> list[dict[str, Any]]:
        """POST the cells; the records (asserting 202)."""
        response = await self.http.post(
            "/api/datastore/executions", json={"path": path, "cell_ids": list(cell_ids), **extra}
        )
        assert response.status_code == 202, response.text
        return list(response.json()["executions"])

    async def post(self, body: Any) -> httpx.Response:
        return await self.http.post("/api/datastore/executions", json=body)

    async def get(self, execution_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/datastore/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait(
        self, execution_id: str, statuses: set[str] = FINISHED, timeout: float = 60
    ) -> dict[str, Any]:
        """Poll a record until its status is one of `statuses`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            record = await self.get(execution_id)
            if record["status"] in statuses:
                return record
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"execution still {record['status']} after {timeout}s")
            await asyncio.sleep(0.05)


def ycell(doc: Doc, cell_id: str) -> Map | None:
    for cell in doc.get("cells", type=Array):
        if isinstance(cell, Map) and cell.get("id") == cell_id:
            return cell
    return None


def cell_json(doc: Doc, cell_id: str) -> dict[str, Any]:
    cell = ycell(doc, cell_id)
    assert cell is not None, f"no cell {cell_id}"
    return dict(json.loads(str(cell)))


def outputs_text(doc: Doc, cell_id: str) -> str:
    """Everything a cell shows as text: streams, text/plain, error names."""
    parts = []
    for output in cell_json(doc, cell_id).get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
        else:
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)
