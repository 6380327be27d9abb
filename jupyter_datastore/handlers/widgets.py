"""`/api/datastore/widgets`: the ipywidgets state of a notebook's kernel (execution/widgets.py).

    GET    /api/datastore/widgets?path=NB              the widget-state JSON (viewer)
    PATCH  /api/datastore/widgets/{model_id}?path=NB   {"state": {...}}: set values (runner)

A kernel's widgets may come from any notebook it serves: reading them needs the viewer role
on every one of them, and setting a value (which runs the widget's code in the kernel) the
runner role, as running a cell does (`Executor.check_kernel_use`).
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..errors import BadRequest, Forbidden
from .base import DatastoreHandler, authorized_to

__all__ = ["WidgetHandler", "WidgetsHandler"]


class _Base(DatastoreHandler):
    auth_resource = "kernels"

    def notebook(self, needed: Role, operation: str) -> str:
        """The real path of the `path` query argument, on which the caller needs `needed`."""
        raw = self.get_query_argument("path", None)
        if raw is None:
            raise BadRequest('the query argument "path" (the notebook) is required')
        path = self.file_path(raw)
        try:
            self.require(path, needed, operation)
        except Forbidden:  # said without the real path (a link's target)
            raise Forbidden(f"to {operation} needs the role {needed.label}") from None
        return path


class WidgetsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.notebook(Role.VIEWER, "read widget states")
        executor = self.datastore.executor
        kernel_id = await executor.kernel_of(path)
        await executor.check_kernel_role(
            self.user_name, kernel_id, Role.VIEWER, "read widget states"
        )
        self.finish(json.dumps(executor.widgets_of(kernel_id)))


class WidgetHandler(_Base):
    @web.authenticated
    @authorized_to("execute")
    async def patch(self, model_id: str) -> None:
        path = self.notebook(Role.RUNNER, "set a widget's state")
        body = self.get_json_object()
        if body.keys() != {"state"}:
            raise BadRequest('the body must be {"state": {<name>: <value>, ...}}')
        executor = self.datastore.executor
        kernel_id = await executor.kernel_of(path)
        await executor.check_kernel_use(self.user_name, kernel_id, path)
        model = await executor.set_widget_state(kernel_id, model_id, body["state"])
        self.finish(json.dumps(model))
