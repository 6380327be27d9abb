"""Thin HTTP and WebSocket handlers; the logic lives in the layers they call."""

from __future__ import annotations

from typing import Any

from .events import event_handlers
from .executions import ExecutionHandler, ExecutionInputHandler, ExecutionsHandler
from .forks import ForkHandler, TimelineHandler, UndoRedoHandler
from .graphql import GraphiQLStaticHandler, GraphQLHandler, SchemaHandler
from .nbmodel import (
    KERNEL_ID,
    REQUEST_ID,
    NbModelExecuteHandler,
    NbModelInputHandler,
    NbModelRequestHandler,
)
from .notifications import notification_handlers
from .openapi import OpenAPIHandler
from .permissions import PermissionsHandler
from .room import RoomHandler
from .session import DocSessionHandler
from .state import StateHandler, StateRefreshHandler, StateSubscribeHandler
from .status import StatusHandler
from .undo import RedoHandler, UndoHandler
from .widgets import WidgetHandler, WidgetsHandler

__all__ = ["handlers"]

handlers: list[tuple[str, Any]] = [
    (r"/api/collaboration/session/(.*)", DocSessionHandler),
    (r"/api/collaboration/room/(.*)", RoomHandler),
    (r"/api/collaboration/fork/(?P<room_id>[^/]+)", ForkHandler),
    (r"/api/collaboration/timeline/(?P<path>.*)", TimelineHandler),
    (r"/api/collaboration/undo_redo/(?P<room_id>[^/]+)", UndoRedoHandler),
    (r"/api/datastore/status", StatusHandler),
    (r"/api/datastore/openapi.json", OpenAPIHandler),
    (r"/api/datastore/graphql", GraphQLHandler),
    (r"/api/datastore/graphql/schema.graphql", SchemaHandler),
    (r"/api/datastore/graphql/static/(?P<path>.*)", GraphiQLStaticHandler),
    (r"/api/datastore/state", StateHandler),
    (r"/api/datastore/state/refresh", StateRefreshHandler),
    (r"/api/datastore/state/subscribe", StateSubscribeHandler),
    (r"/api/datastore/permissions/(?P<path>.*)", PermissionsHandler),
    (r"/api/datastore/rooms/(?P<room_id>[^/]+)/undo", UndoHandler),
    (r"/api/datastore/rooms/(?P<room_id>[^/]+)/redo", RedoHandler),
    *event_handlers,
    *notification_handlers,
    (r"/api/datastore/executions", ExecutionsHandler),
    (r"/api/datastore/executions/(?P<execution_id>[^/]+)", ExecutionHandler),
    (r"/api/datastore/executions/(?P<execution_id>[^/]+)/input", ExecutionInputHandler),
    (r"/api/datastore/widgets", WidgetsHandler),
    (r"/api/datastore/widgets/(?P<model_id>[^/]+)", WidgetHandler),
    # jupyter-server-nbmodel's contract (its clients work unchanged)
    (rf"/api/kernels/{KERNEL_ID}/execute", NbModelExecuteHandler),
    (rf"/api/kernels/{KERNEL_ID}/requests/{REQUEST_ID}", NbModelRequestHandler),
    (rf"/api/kernels/{KERNEL_ID}/input", NbModelInputHandler),
]
