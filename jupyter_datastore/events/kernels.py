"""Kernel status events: each kernel's execution state, sent when it changes.

Where the states come from, without polling:

- jupyter_server's own `kernel_actions` events (heard on the bus): a started kernel is
  `starting`, a restarted one `restarting` (until it is idle again), a shut down one `dead`;
- its kernel manager's restarter: `restarting` when the kernel died and is being restarted,
  `dead` when it could not be restarted;
- the kernel's IOPub channel: `busy` and `idle`. Each followed kernel has one SUB socket of
  ours (its own Session, so its own signature history); a message is decoded only when its
  header says it is a `status` message, so a flood of output costs a byte search per
  message. Status messages about requests on the control channel (resource usage polls,
  debugger requests, interrupts) are left out: they run beside the shell's requests and
  would report the kernel idle while a cell still runs.

A started or restarted kernel says nothing on IOPub until someone asks it something, so the
watcher asks once: a `kernel_info_request`, sent again while IOPub stays silent (the SUB
socket may join after the first answer was published). The busy and idle of the watcher's
own requests are not reported; their idle marks the kernel ready (`idle`).

A kernel behind a Kernel Gateway has no ZMQ ports of ours: it is followed over the
gateway's WebSocket (`execution/gateway.py`'s `GatewayChannels`, keeping only IOPub), with the
same filter and the same `kernel_info_request`s (sent on the socket's shell channel). Its
restarter runs on the gateway, which says `restarting` (or `dead` when that failed) in a
status message with no parent: those are reported, and a restarted kernel is asked again.

Kernels already running when the watcher starts are followed too, from the state jupyter_
server recorded for them. Only changes are sent, each with the state before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient

from ..execution.gateway import GatewayChannels, is_gateway_kernel
from .bus import EventBus, EventFilter, Subscription
from .catalog import KERNEL_ACTIONS, KERNEL_STATUS

__all__ = ["KernelWatcher"]

log = logging.getLogger(__name__)

_DELIM = b"<IDS|MSG>"
_CONTROL_REQUESTS = frozenset(
    {"usage_request", "debug_request", "interrupt_request", "shutdown_request"}
)
_REGISTERED_WAIT = 5.0  # seconds a started kernel may take to appear in the kernel manager


class KernelWatcher:
    def __init__(self, bus: EventBus, kernels: Any, *, ready_timeout: float = 60.0) -> None:
        self.bus = bus
        self.kernels = kernels  # jupyter_server's MappingKernelManager
        self.ready_timeout = ready_timeout
        self.states: dict[str, str] = {}
        self.names: dict[str, str | None] = {}
        self.followers: dict[str, _Follower] = {}
        self.listeners: list[Callable[[str, str], None]] = []
        """Told each kernel's new state: (kernel id, state)."""
        self._context: zmq.asyncio.Context | None = None
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ---

    async def start(self) -> None:
        self._context = zmq.asyncio.Context()
        # Subscribed first: a kernel started from now on is in the events, the others below.
        self._subscription = self.bus.subscribe(EventFilter(frozenset({KERNEL_ACTIONS})))
        self._task = asyncio.ensure_future(self._watch())
        for kernel_id in list(self.kernels.list_kernel_ids()):
            manager = self.kernels.get_kernel(kernel_id)
            state = getattr(manager, "execution_state", None)
            if state in ("starting", "busy", "idle"):
                self.states[kernel_id] = state
            self._follow(kernel_id, getattr(manager, "kernel_name", None), ask=state == "starting")

    async def stop(self) -> None:
        if self._subscription is not None:
            self.bus.unsubscribe(self._subscription)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        followers, self.followers = list(self.followers.values()), {}
        await asyncio.gather(*(f.stop() for f in followers), return_exceptions=True)
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    # --- jupyter_server's kernel actions ---

    async def _watch(self) -> None:
        while True:
            subscription = self._subscription
            assert subscription is not None
            events = await subscription.next()
            if subscription.closed is not None:
                if subscription.closed != "overflow":
                    return
                log.warning("kernel events overflowed; following them again")
                self._subscription = self.bus.subscribe(subscription.filter)
            for event in events:
                try:
                    self.heard_action(event.data)
                except Exception:
                    log.exception("cannot follow a kernel action: %s", event.data)

    def heard_action(self, data: dict[str, Any]) -> None:
        """A `kernel_actions` event's data: ours, or supernode mode's upstream's."""
        kernel_id, action = data.get("kernel_id"), data.get("action")
        if data.get("status") != "success" or not isinstance(kernel_id, str):
            return
        if isinstance(data.get("kernel_name"), str):
            self.names[kernel_id] = data["kernel_name"]
        if action == "start" and kernel_id not in self.followers:
            self.transition(kernel_id, "starting")
            self._follow(kernel_id, self.names.get(kernel_id), ask=True)
        elif action == "restart":
            self.transition(kernel_id, "restarting", "restarted on request")
            self._unfollow(kernel_id)
            self._follow(kernel_id, self.names.get(kernel_id), ask=True)  # its ports may change
        elif action == "shutdown":
            self._unfollow(kernel_id)
            self.transition(kernel_id, "dead", "shut down")

    # --- states ---

    def transition(self, kernel_id: str, state: str, reason: str | None = None) -> None:
        """Record a kernel's state; an event when it changed."""
        previous = self.states.get(kernel_id)
        if state == previous:
            return
        self.states[kernel_id] = state
        data = {
            "kernel_id": kernel_id,
            "kernel_name": self.names.get(kernel_id),
            "execution_state": state,
            "previous": previous,
            "reason": reason,
        }
        if state == "dead":
            self.states.pop(kernel_id, None)
            self.names.pop(kernel_id, None)
        self.bus.emit(KERNEL_STATUS, data)
        for listener in self.listeners:
            listener(kernel_id, state)

    def _follow(self, kernel_id: str, name: str | None, *, ask: bool) -> None:
        if name is not None:
            self.names.setdefault(kernel_id, name)
        if kernel_id not in self.followers and self._context is not None:
            self.followers[kernel_id] = _Follower(self, kernel_id, self._context, ask=ask)

    def _unfollow(self, kernel_id: str) -> None:
        follower = self.followers.pop(kernel_id, None)
        if follower is not None:
            follower.cancel()


class _Follower:
    """One kernel's IOPub status messages, and its restarter's callbacks."""

    def __init__(
        self, watcher: KernelWatcher, kernel_id: str, context: zmq.asyncio.Context, *, ask: bool
    ) -> None:
        self.watcher = watcher
        self.kernel_id = kernel_id
        self.context = context
        self.ask = ask
        self.own: set[str] = set()
        """Our kernel_info requests: their busy and idle are not the kernel's activity."""
        self.answered = asyncio.Event()
        self.heard_own = False
        self._manager: Any = None
        self._gateway_asking: asyncio.Future[None] | None = None
        self._task = asyncio.ensure_future(self._run())

    def cancel(self) -> None:
        self._task.cancel()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        sockets: list[Any] = []
        asking: asyncio.Future[None] | None = None
        try:
            manager = await self._find_manager()
            if manager is None:
                return
            if is_gateway_kernel(manager):  # no ZMQ ports of ours: the gateway's WebSocket
                await self._follow_gateway()
                return
            self._manager = manager
            manager.add_restart_callback(self._on_restart, "restart")
            manager.add_restart_callback(self._on_dead, "dead")
            client = AsyncKernelClient(context=self.context)
            client.load_connection_info(manager.get_connection_info())
            iopub: Any = client.connect_iopub()  # an asyncio socket (the context is)
            sockets.append(iopub)
            if self.ask:
                shell = client.connect_shell()
                sockets.append(shell)
                asking = asyncio.ensure_future(self._ask(client, shell))
            while True:
                frames = await iopub.recv_multipart(copy=False)
                try:
                    self._on_message(client, frames)
                except Exception as exc:  # a malformed or unsigned message: not a status
                    log.debug("kernel %s: an IOPub message was not read: %s", self.kernel_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a kernel whose channels cannot be reached
            log.info("kernel %s: its busy/idle states are not followed: %s", self.kernel_id, exc)
        finally:
            if asking is not None:
                asking.cancel()
            for socket in sockets:
                socket.close(linger=0)
            if self._manager is not None:
                with contextlib.suppress(Exception):
                    self._manager.remove_restart_callback(self._on_restart, "restart")
                    self._manager.remove_restart_callback(self._on_dead, "dead")

    async def _find_manager(self) -> Any:
        """The kernel's manager; a started kernel is registered just after its event."""
        kernels = self.watcher.kernels
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _REGISTERED_WAIT
        while self.kernel_id not in kernels:
            if loop.time() > deadline:
                log.info("kernel %s is gone before it could be followed", self.kernel_id)
                return None
            await asyncio.sleep(0.05)
        return kernels.get_kernel(self.kernel_id)

    async def _ask(self, client: AsyncKernelClient, shell: Any) -> None:
        """Ask the kernel for its info until its answer's idle is heard on IOPub."""
        try:
            await self._asking(
                lambda: client.session.send(shell, "kernel_info_request", {})["header"]["msg_id"]
            )
        finally:
            shell.close(linger=0)

    async def _asking(self, send: Callable[[], str]) -> None:
        """Send a `kernel_info_request` (`send` gives its id), again while IOPub says
        nothing of it, until its idle is heard. No deadline: a kernel slow to start (a loaded
        machine, many starting at once) must still be seen idle once it answers; asking ends
        when the kernel is no longer followed, one request every 4 s at most until then."""
        wait = 0.25
        while not self.answered.is_set():
            if not self.heard_own:  # IOPub is silent so far: perhaps it joined late
                self.own.add(send())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.answered.wait(), wait)
            wait = min(wait * 2, 4.0)

    def _on_message(self, client: AsyncKernelClient, frames: list[Any]) -> None:
        delimiter = next(i for i, frame in enumerate(frames) if frame.bytes == _DELIM)
        header = frames[delimiter + 2].bytes
        if b'"status"' not in header:
            return
        parts = [frame.bytes for frame in frames[delimiter + 1 :]]
        message = client.session.deserialize(parts, content=True)
        if message["msg_type"] != "status":
            return
        self._on_status(message)

    def _on_status(self, message: dict[str, Any]) -> None:
        state = message["content"].get("execution_state")
        parent = message.get("parent_header") or {}
        if parent.get("msg_id") in self.own:
            self.heard_own = True
            if state == "idle" and not self.answered.is_set():  # the first answer: ready
                self.answered.set()
                self.watcher.transition(self.kernel_id, "idle")
        elif parent.get("msg_type") not in _CONTROL_REQUESTS and state in ("busy", "idle"):
            self.watcher.transition(self.kernel_id, state)

    # --- a kernel behind a Kernel Gateway ---

    async def _follow_gateway(self) -> None:
        """The kernel's IOPub over the gateway's WebSocket (only IOPub is kept). The
        gateway says `restarting` (and `dead` when that failed) with no parent, its
        restarter being its own: a restarted kernel is asked again for its info."""
        client = GatewayChannels(self.kernel_id, channels=("iopub",))
        try:
            await client.connect(timeout=self.watcher.ready_timeout)
            if self.ask:
                self._ask_gateway(client)
            closed = asyncio.ensure_future(client.closed.wait())
            try:
                while True:
                    received = asyncio.ensure_future(client.iopub_channel.get_msg())
                    await asyncio.wait({received, closed}, return_when=asyncio.FIRST_COMPLETED)
                    if not received.done():
                        received.cancel()
                        log.info("gateway kernel %s: its WebSocket closed", self.kernel_id)
                        return
                    message = received.result()
                    if message.get("msg_type") != "status":
                        continue
                    try:
                        self._on_gateway_status(client, message)
                    except Exception as exc:
                        log.debug(
                            "gateway kernel %s: a status was not read: %s", self.kernel_id, exc
                        )
            finally:
                closed.cancel()
        finally:
            if self._gateway_asking is not None:
                self._gateway_asking.cancel()
            client.stop_channels()

    def _ask_gateway(self, client: GatewayChannels) -> None:
        if self._gateway_asking is not None:
            self._gateway_asking.cancel()
        self.answered.clear()
        self.heard_own = False

        def send() -> str:
            message = client.session.msg("kernel_info_request")
            client.send("shell", message)
            return str(message["header"]["msg_id"])

        self._gateway_asking = asyncio.ensure_future(self._asking(send))

    def _on_gateway_status(self, client: GatewayChannels, message: dict[str, Any]) -> None:
        state = message.get("content", {}).get("execution_state")
        if not message.get("parent_header") and state == "restarting":
            self.watcher.transition(self.kernel_id, "restarting", "the kernel restarted")
            self._ask_gateway(client)
        elif not message.get("parent_header") and state == "dead":
            self.watcher._unfollow(self.kernel_id)
            self.watcher.transition(self.kernel_id, "dead", "the kernel died and was not restarted")
        else:
            self._on_status(message)

    # --- the restarter (called by jupyter_client, on the event loop) ---

    def _on_restart(self) -> None:
        self.watcher.transition(self.kernel_id, "restarting", "the kernel died: restarting it")

    def _on_dead(self) -> None:
        self.watcher._unfollow(self.kernel_id)
        self.watcher.transition(self.kernel_id, "dead", "the kernel died and was not restarted")
