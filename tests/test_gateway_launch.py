"""Kernels started on a Jupyter Kernel Gateway (a real one, on loopback) through
`jupyter-datastore serve --gateway-url URL --gateway-token T`: the launch's steps in the
server's state, a clear error when the gateway refuses, is not there or does not answer, and
the failed launch in the state."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import TOKEN, free_port
from gateways import GATEWAY_TOKEN, Gateway
from roles import ROLE_ARGS, TOKENS, http
from two_users import two_users_env
from yclient import eventually

pytestmark = pytest.mark.timeout(240)

STEPS = ("requested", "started", "connected", "idle")


def client(server: Any) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {TOKEN}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60)


async def failed_launches(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get("/api/datastore/state")
    assert response.status_code == 200, response.text
    kernels = response.json()["kernels"]
    return [k for k in kernels.values() if k.get("execution_state") == "failed"]


async def failed_start(api: httpx.AsyncClient, status: int) -> tuple[str, dict[str, Any]]:
    """Ask for a kernel the gateway cannot start: the answer's message (with `status`),
    and the state's one failed launch."""
    response = await api.post("/api/kernels", json={"name": "python3"})
    assert response.status_code == status, response.text

    async def one() -> list[dict[str, Any]] | None:
        return await failed_launches(api) or None

    (entry,) = await eventually(one)
    return str(response.json()["message"]), entry


async def test_a_kernel_started_over_rest_on_a_gateway_shows_its_launch_steps(
    gateway: Gateway, make_server: Any, tmp_path: Path
) -> None:
    server = make_server(
        [f"--gateway-url={gateway.url}", f"--gateway-token={GATEWAY_TOKEN}"], root=tmp_path
    )
    async with client(server) as api:
        response = await api.post("/api/kernels", json={"name": "python3"})
        assert response.status_code == 201, response.text
        kernel_id = response.json()["id"]
        # The kernel runs on the gateway: the gateway knows it.
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"token {GATEWAY_TOKEN}"}
        ) as direct:
            found = await direct.get(f"/api/kernels/{kernel_id}")
            assert found.status_code == 200, found.text

        async def launch() -> dict[str, Any] | None:
            await api.post("/api/datastore/state/refresh")  # the gateway's model, read again
            state = (await api.get("/api/datastore/state")).json()
            entry = state["kernels"].get(kernel_id)
            steps = (entry or {}).get("launch")
            return steps if steps and all(steps.get(s) for s in STEPS) else None

        steps = await eventually(launch, timeout=90)
        times = [steps[s] for s in STEPS]
        assert times[0] < times[1] <= times[2] <= times[3], steps
        assert "failed" not in steps

        response = await api.delete(f"/api/kernels/{kernel_id}")
        assert response.status_code == 204, response.text


async def test_a_gateway_that_refuses_the_token_gives_a_clear_502_and_a_failed_launch(
    gateway: Gateway, make_server: Any, tmp_path: Path
) -> None:
    server = make_server(
        [f"--gateway-url={gateway.url}", "--gateway-token=not-the-token"], root=tmp_path
    )
    async with client(server) as api:
        response = await api.post("/api/kernels", json={"name": "python3"})
        assert response.status_code == 502, response.text
        message = response.json()["message"]
        assert gateway.url in message
        assert "refused" in message and "token" in message, message
        # A session with a new kernel fails with the same message and status (jupyter_server's
        # sessions handler wraps any failure of create_session as a 500: unwrapped).
        response = await api.post(
            "/api/sessions",
            json={"path": "a.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        assert response.status_code == 502, response.text
        assert gateway.url in response.json()["message"]
        assert "check the gateway token" in response.json()["message"]

        async def two() -> list[dict[str, Any]] | None:
            failed = await failed_launches(api)
            return failed if len(failed) == 2 else None

        failed = await eventually(two)
        for entry in failed:
            assert entry["name"] == "python3"
            assert gateway.url in entry["reason"] and "token" in entry["reason"]
            launch = entry["launch"]
            assert launch["requested"] <= launch["failed"]
            assert launch["started"] is None
        status = (await api.get("/api/datastore/state")).json()["status"]
        assert status["kernels"] == 0


async def test_a_gateway_url_where_nothing_listens_gives_a_clear_503(
    make_server: Any, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    server = make_server([f"--gateway-url={url}", "--gateway-token=t"], root=tmp_path)
    async with client(server) as api:
        message, entry = await failed_start(api, 503)
        assert url in message and "cannot be reached" in message, message
        assert url in entry["reason"]
        assert entry["launch"]["failed"]


async def test_a_gateway_that_does_not_answer_gives_a_clear_504(
    make_server: Any, tmp_path: Path
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        server = make_server(
            [
                f"--gateway-url={url}",
                "--gateway-token=t",
                "--GatewayClient.request_timeout=2",
                "--GatewayClient.connect_timeout=2",
                "--GatewayClient.launch_timeout_pad=0",
            ],
            root=tmp_path,
            # jupyter_server keeps request_timeout >= KERNEL_LAUNCH_TIMEOUT + the pad
            env={"KERNEL_LAUNCH_TIMEOUT": "1", "JUPYTER_GATEWAY_MAX_REQUEST_RETRIES": "0"},
        )
        async with client(server) as api:
            message, entry = await failed_start(api, 504)
            assert url in message and "did not answer" in message, message
            assert "did not answer" in entry["reason"]


def roles_on_a_gateway(gateway: Gateway, make_server: Any, tmp_path: Path) -> Any:
    """A server with alice, bob, carol and mallory (roles.py), its kernels on the gateway."""
    return make_server(
        [*ROLE_ARGS, f"--gateway-url={gateway.url}", f"--gateway-token={GATEWAY_TOKEN}"],
        root=tmp_path,
        env=two_users_env(),
    )


async def test_a_user_with_no_role_cannot_start_a_gateway_kernel(
    gateway: Gateway, make_server: Any, tmp_path: Path
) -> None:
    server = roles_on_a_gateway(gateway, make_server, tmp_path)
    async with http(server, "mallory") as mallory:
        response = await mallory.post("/api/kernels", json={"name": "python3"})
        assert response.status_code == 403, response.text
    async with http(server, "alice") as alice:
        state = (await alice.get("/api/datastore/state")).json()
        assert state["kernels"] == {}  # nothing was started, nor tried


async def test_a_user_with_no_role_gets_no_kernel_socket_to_a_gateway_kernel(
    gateway: Gateway, make_server: Any, tmp_path: Path
) -> None:
    """Mallory's handshake on a gateway kernel's channels is refused before the relay dials
    the gateway: the gateway holds only the server's own socket (its kernel watcher's)."""
    server = roles_on_a_gateway(gateway, make_server, tmp_path)
    async with http(server, "alice") as alice:
        response = await alice.post("/api/kernels", json={"name": "python3"})
        assert response.status_code == 201, response.text
        kernel_id = response.json()["id"]
    gateway_headers = {"Authorization": f"token {GATEWAY_TOKEN}"}

    async def gateway_sockets() -> int:
        async with httpx.AsyncClient(headers=gateway_headers) as direct:
            response = await direct.get(f"{gateway.url}/api/kernels/{kernel_id}")
            return int(response.json()["connections"])

    async def only_the_watchers() -> bool:
        return await gateway_sockets() == 1

    await eventually(only_the_watchers)
    channels = "ws" + server.url[4:] + f"/api/kernels/{kernel_id}/channels?session_id=m"
    headers = {"Authorization": f"token {TOKENS['mallory']}"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(channels, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
    assert await only_the_watchers()
    async with http(server, "alice") as alice:
        assert (await alice.delete(f"/api/kernels/{kernel_id}")).status_code == 204


def test_the_gateway_flags_map_to_jupyter_servers_gateway_client() -> None:
    from jupyter_datastore.cli import serve_arguments

    args = serve_arguments(["--gateway-url", "http://gw:8888", "--gateway-token=secret"])
    assert "--GatewayClient.url=http://gw:8888" in args
    assert "--GatewayClient.auth_token=secret" in args
    assert not [a for a in serve_arguments([]) if a.startswith("--GatewayClient")]


async def test_a_local_kernel_shows_its_launch_steps_too(make_server: Any, tmp_path: Path) -> None:
    server = make_server(root=tmp_path)
    async with client(server) as api:
        response = await api.post("/api/kernels", json={"name": "python3"})
        assert response.status_code == 201, response.text
        kernel_id = response.json()["id"]

        async def launch() -> dict[str, Any] | None:  # no refresh: the events bring them
            state = (await api.get("/api/datastore/state")).json()
            steps = (state["kernels"].get(kernel_id) or {}).get("launch")
            return steps if steps and all(steps.get(s) for s in STEPS) else None

        steps = await eventually(launch, timeout=60)
        # jupyter_server connects its activity watch to a local kernel's IOPub before
        # start_kernel returns: connected comes before started here.
        assert steps["requested"] <= steps["connected"] <= steps["started"], steps
        assert steps["started"] <= steps["idle"], steps
        response = await api.delete(f"/api/kernels/{kernel_id}")
        assert response.status_code == 204, response.text
