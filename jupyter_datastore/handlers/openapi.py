"""`GET /api/datastore/openapi.json`: the OpenAPI document of our REST endpoints."""

from __future__ import annotations

from importlib.resources import files

from tornado import web

from .base import DatastoreHandler

__all__ = ["OpenAPIHandler"]

OPENAPI = files("jupyter_datastore").joinpath("openapi.json").read_text()


class OpenAPIHandler(DatastoreHandler):
    @web.authenticated
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(OPENAPI)
