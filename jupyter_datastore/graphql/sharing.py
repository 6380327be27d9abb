"""One event, many subscribers: what is the same for all of them is computed once.

The event socket builds each event's frame once for every subscriber; a GraphQL
subscription would run its selection set on each event once per subscriber (most of the
cost of a delivery). Here:

- A payload that may be shared (`Shared`: its fields depend on nothing but itself, never
  on who asks) keeps the results of the operations run on it: subscribers with the same
  operation (the same query text: the parse cache of `limits.py` gives the same document) and
  the same variables get the same result, run once. Each subscriber's resolver still
  decides, before it yields the payload, whether the caller may see it.
- The transport keeps the frame of a `next` message for the same subscription id and the
  same result (`FrameCache`): clients number their subscriptions alike ("1", "2", ...).

Both are bounded: `Shared` payloads live as long as their source keeps them (see
`SharedPayloads`); the frame cache holds the last `FRAMES` frames.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from inspect import isawaitable
from typing import Any, Generic, TypeVar

from graphql import OperationType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from ..protocol.frames import Outgoing

__all__ = ["FRAMES", "FrameCache", "Shared", "SharedPayloads", "SharingExecutor"]

FRAMES = 256
K = TypeVar("K")
V = TypeVar("V")


class Shared:
    """A subscription payload whose results are the same for every subscriber: a type
    derives from it only if none of its fields (nor theirs) depends on the caller."""

    # No __init__: Strawberry's types are dataclasses whose own __init__ does not call it.

    def result_of(self, operation: Any, variables: Mapping[str, Any]) -> Any:
        results = self.__dict__.get("_shared_results") or {}
        found = results.get((id(operation), _frozen(variables)))
        return found[1] if found is not None and found[0] is operation else None

    def keep(self, operation: Any, variables: Mapping[str, Any], result: Any) -> None:
        results = self.__dict__.setdefault("_shared_results", {})
        results[(id(operation), _frozen(variables))] = (operation, result)


def _frozen(variables: Mapping[str, Any]) -> str:
    return json.dumps(variables, sort_keys=True, default=repr)


class SharedPayloads(Generic[K, V]):
    """The last `size` payloads made from a source's items, by key: subscribers that get
    the same item get the same payload (and so its results)."""

    def __init__(self, make: Callable[[Any], V], size: int = 1024) -> None:
        self._make = make
        self._size = size
        self._payloads: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, item: Any) -> V:
        payload = self._payloads.get(key)
        if payload is None:
            payload = self._payloads[key] = self._make(item)
            if len(self._payloads) > self._size:
                self._payloads.popitem(last=False)
        return payload


class _Known:
    """A per-event executor whose result is known already (no copy of the executor made)."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


class SharingExecutor(StrawberryGraphQLCoreExecutionContext):  # type: ignore[misc]
    """graphql-core's executor, reusing a `Shared` payload's result for a subscription."""

    def build_per_event_executor(self, payload: Any) -> Any:
        if isinstance(payload, Shared) and self.operation.operation == OperationType.SUBSCRIPTION:
            known = payload.result_of(self.operation, self.variable_values.coerced)
            if known is not None:
                return _Known(known)
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        payload = self.root_value
        operation = self.operation
        if not isinstance(payload, Shared) or operation.operation != OperationType.SUBSCRIPTION:
            return super().execute_operation(serially)
        variables = self.variable_values.coerced  # not known: `build_per_event_executor`
        result = super().execute_operation(serially)
        if not isawaitable(result):
            payload.keep(operation, variables, result)
            return result

        async def kept() -> Any:
            done = await result
            payload.keep(operation, variables, done)
            return done

        return kept()


class FrameCache:
    """The frames of the last `FRAMES` results sent, by subscription id and result."""

    def __init__(self) -> None:
        self._frames: OrderedDict[tuple[str, int], tuple[Any, Outgoing]] = OrderedDict()

    def outgoing(self, message: Mapping[str, Any]) -> Outgoing:
        """`message` as one text message; a result's `next` (or the legacy protocol's
        `data`) is encoded once per subscription id."""
        payload = message.get("payload")
        if (
            message.get("type") not in ("next", "data")
            or not isinstance(payload, dict)
            or payload.keys() != {"data"}
            or not isinstance(message.get("id"), str)
        ):
            return Outgoing(json.dumps(message).encode(), text=True)
        data = payload["data"]
        key = (message["id"], id(data))
        found = self._frames.get(key)
        if found is not None and found[0] is data:
            return found[1]
        outgoing = Outgoing(json.dumps(message).encode(), text=True)
        self._frames[key] = (data, outgoing)
        if len(self._frames) > FRAMES:
            self._frames.popitem(last=False)
        return outgoing
