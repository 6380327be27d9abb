"""ipywidgets' state kept by the server: read and set over REST and from the Python client,
with real kernels running ipywidgets, on a server with named people and roles."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from execapi import ExecApi
from notebooks import code_cell, notebook, read_notebook, write_notebook
from pycrdt import Array
from roles import TOKENS, http, share
from yclient import YClient, eventually, until

from jupyter_datastore.client import Client
from jupyter_datastore.client import Forbidden as ClientForbidden

pytestmark = pytest.mark.timeout(180)

SLIDER = "import ipywidgets as w\ns = w.IntSlider(value=3, description='S')\ns"
BOX = "box = w.VBox([w.IntSlider(value=i, description=f'b{i}') for i in range(20)])\nbox"


@pytest.fixture(scope="module")
def server(roles_server: Any) -> Any:
    return roles_server


@pytest.fixture
async def api(server: Any) -> AsyncIterator[ExecApi]:
    client = ExecApi(server.url, TOKENS["alice"])
    yield client
    await client.close()


async def run(api: ExecApi, path: str, cell_id: str) -> dict[str, Any]:
    (record,) = await api.run(path, cell_id)
    done = await api.wait(record["id"])
    assert done["status"] == "ok", done
    return done


async def stop_kernel(api: ExecApi, path: str) -> None:
    """End the notebook's session and its kernel."""
    sessions = (await api.http.get("/api/sessions")).json()
    for session in sessions:
        if session["path"] == path:
            response = await api.http.delete(f"/api/sessions/{session['id']}")
            assert response.status_code == 204, response.text


async def restart(api: ExecApi, kernel_id: str) -> None:
    """Restart a kernel and wait until it is idle (one shut down while it still imports
    prints a KeyboardInterrupt into the server's log)."""
    response = await api.http.post(f"/api/kernels/{kernel_id}/restart")
    assert response.status_code == 200, response.text

    async def idle() -> bool:
        kernel = await api.http.get(f"/api/kernels/{kernel_id}")
        return bool(kernel.json().get("execution_state") == "idle")

    await eventually(idle)


async def widgets(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get("/api/datastore/widgets", params={"path": path})
    assert response.status_code == 200, response.text
    state = response.json()
    assert (state["version_major"], state["version_minor"]) == (2, 0)
    return dict(state["state"])


def sliders(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sliders by description: their model ids and states."""
    return {
        model["state"]["description"]: {"id": model_id, **model["state"]}
        for model_id, model in state.items()
        if model["model_name"] == "IntSliderModel"
    }


async def patch(
    client: httpx.AsyncClient, path: str | None, model_id: str, body: Any
) -> httpx.Response:
    params = {} if path is None else {"path": path}
    return await client.patch(f"/api/datastore/widgets/{model_id}", params=params, json=body)


async def test_a_slider_is_read_set_closed_and_gone_with_a_restart(server, api) -> None:
    path = "sliders.ipynb"
    write_notebook(
        server.root / path,
        notebook(
            code_cell(SLIDER, "slider"),
            code_cell("print(s.value)", "show"),
            code_cell(BOX, "box"),
            code_cell("s.close()", "close"),
        ),
    )
    try:
        record = await run(api, path, "slider")
        slider = sliders(await widgets(api.http, path))["S"]
        assert slider["value"] == 3
        model = (await widgets(api.http, path))[slider["id"]]
        assert model["model_module"] == "@jupyter-widgets/controls"
        assert model["model_module_version"]
        # Its layout and style are models of their own, referenced from its state.
        assert model["state"]["layout"].startswith("IPY_MODEL_")

        response = await patch(api.http, path, slider["id"], {"state": {"value": 7}})
        assert response.status_code == 200, response.text
        assert response.json()["state"]["value"] == 7
        shown = await run(api, path, "show")
        assert shown["outputs"][0]["text"] == "7\n"
        assert sliders(await widgets(api.http, path))["S"]["value"] == 7

        await run(api, path, "box")
        state = await widgets(api.http, path)
        (box,) = [m for m in state.values() if m["model_name"] == "VBoxModel"]
        children = [ref.removeprefix("IPY_MODEL_") for ref in box["state"]["children"]]
        assert len(children) == 20
        assert [state[c]["state"]["value"] for c in children] == list(range(20))

        await run(api, path, "close")
        state = await widgets(api.http, path)
        assert slider["id"] not in state
        assert "S" not in sliders(state)
        assert len(sliders(state)) == 20

        await restart(api, record["kernel_id"])
        assert await widgets(api.http, path) == {}
    finally:
        await stop_kernel(api, path)


async def test_bad_input_is_refused_and_changes_nothing(server, api) -> None:
    path = "bad.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    write_notebook(server.root / "idle.ipynb", notebook(code_cell("1", "c")))
    try:
        await run(api, path, "slider")
        slider = sliders(await widgets(api.http, path))["S"]
        model_id = slider["id"]
        refused = {
            "a list": (path, {"state": [1]}, 400),
            "a string": (path, {"state": "7"}, 400),
            "nothing to set": (path, {"state": {}}, 400),
            "the model's name": (path, {"state": {"_model_name": "X", "value": 1}}, 400),
            "no state": (path, {"value": 7}, 400),
            "extra fields": (path, {"state": {"value": 7}, "more": 1}, 400),
            "no path": (None, {"state": {"value": 7}}, 400),
            "outside the root": ("../bad.ipynb", {"state": {"value": 7}}, 404),
            "the root": ("", {"state": {"value": 7}}, 400),
            "no session": ("idle.ipynb", {"state": {"value": 7}}, 404),
        }
        for what, (where, body, status) in refused.items():
            response = await patch(api.http, where, model_id, body)
            assert response.status_code == status, (what, response.text)
            assert set(response.json()) >= {"error", "detail"}, what
        not_json = await api.http.patch(
            f"/api/datastore/widgets/{model_id}", params={"path": path}, content=b"{"
        )
        assert not_json.status_code == 400
        unknown = await patch(api.http, path, "no-such-model", {"state": {"value": 7}})
        assert unknown.status_code == 404, unknown.text
        for params, status in (
            ({}, 400),
            ({"path": "../x.ipynb"}, 404),
            ({"path": "idle.ipynb"}, 404),
        ):
            response = await api.http.get("/api/datastore/widgets", params=params)
            assert response.status_code == status, (params, response.text)
        assert sliders(await widgets(api.http, path))["S"] == slider
    finally:
        await stop_kernel(api, path)


async def test_viewers_read_runners_set_others_learn_nothing(server, api) -> None:
    path = "shared/w.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    await share(server, path, {"users": {"bob": "runner", "carol": "viewer"}})
    try:
        kernel_id = (await run(api, path, "slider"))["kernel_id"]
        async with (
            http(server, "bob") as bob,
            http(server, "carol") as carol,
            http(server, "mallory") as mallory,
        ):
            slider = sliders(await widgets(carol, path))["S"]
            refused = await patch(carol, path, slider["id"], {"state": {"value": 5}})
            assert refused.status_code == 403, refused.text
            # mallory is told the same for this notebook as for one that does not exist
            answers = []
            for where in (path, "shared/none.ipynb"):
                response = await mallory.get("/api/datastore/widgets", params={"path": where})
                answers.append((response.status_code, response.json()["detail"]))
                response = await patch(mallory, where, slider["id"], {"state": {"value": 5}})
                answers.append((response.status_code, response.json()["detail"]))
            assert answers[:2] == answers[2:]
            assert {status for status, _ in answers} == {403}
            assert sliders(await widgets(carol, path))["S"]["value"] == 3
            accepted = await patch(bob, path, slider["id"], {"state": {"value": 5}})
            assert accepted.status_code == 200, accepted.text
            assert sliders(await widgets(carol, path))["S"]["value"] == 5
            # The kernel serves a notebook carol may not view too: its widgets are not hers.
            session = await api.http.post(
                "/api/sessions",
                json={"path": "hidden.ipynb", "type": "notebook", "kernel": {"id": kernel_id}},
            )
            assert session.status_code == 201, session.text
            hidden = await carol.get("/api/datastore/widgets", params={"path": path})
            assert hidden.status_code == 403, hidden.text
            assert "hidden" not in hidden.text
            refused = await patch(bob, path, slider["id"], {"state": {"value": 6}})
            assert refused.status_code == 403, refused.text
    finally:
        await stop_kernel(api, "hidden.ipynb")
        await stop_kernel(api, path)


async def test_the_python_client_reads_and_sets(server, api) -> None:
    path = "client.ipynb"
    write_notebook(
        server.root / path,
        notebook(code_cell(SLIDER, "slider"), code_cell("print(s.value, s.description)", "show")),
    )
    try:
        await run(api, path, "slider")
        async with Client(server.url, TOKENS["alice"]) as client:
            state = await client.widgets(path)
            slider = sliders(state["state"])["S"]
            model = await client.set_widget(path, slider["id"], value=9)
            assert model["state"]["value"] == 9
            model = await client.set_widget(path, slider["id"], {"description": "T"})
            assert model["state"]["description"] == "T"
            assert sliders((await client.widgets(path))["state"])["T"]["value"] == 9
        shown = await run(api, path, "show")
        assert shown["outputs"][0]["text"] == "9 T\n"
        async with Client(server.url, TOKENS["mallory"]) as client:
            with pytest.raises(ClientForbidden):
                await client.widgets(path)
    finally:
        await stop_kernel(api, path)


async def test_a_value_beyond_the_bounds_is_what_the_kernel_made_it(server, api) -> None:
    """The kernel corrects the echoed value (a slider's max): the answer says the final one."""
    path = "bounds.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    try:
        await run(api, path, "slider")
        slider = sliders(await widgets(api.http, path))["S"]
        response = await patch(api.http, path, slider["id"], {"state": {"value": 1000}})
        assert response.status_code == 200, response.text
        assert response.json()["state"]["value"] == slider["max"]
        assert sliders(await widgets(api.http, path))["S"]["value"] == slider["max"]
    finally:
        await stop_kernel(api, path)


async def test_a_change_made_by_a_browser_is_kept(server, api) -> None:
    """A front end's own kernel connection sets a value: the kernel's echo is what we keep."""
    path = "browser.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    try:
        record = await run(api, path, "slider")
        slider = sliders(await widgets(api.http, path))["S"]
        url = "ws" + server.url[4:] + f"/api/kernels/{record['kernel_id']}/channels"
        headers = {"Authorization": f"token {TOKENS['alice']}"}
        async with websockets.connect(url, additional_headers=headers) as browser:
            msg_id = uuid.uuid4().hex
            await browser.send(
                json.dumps(
                    {
                        "channel": "shell",
                        "header": {
                            "msg_id": msg_id,
                            "msg_type": "comm_msg",
                            "session": uuid.uuid4().hex,
                            "username": "alice",
                            "date": "2026-01-01T00:00:00Z",
                            "version": "5.3",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "content": {
                            "comm_id": slider["id"],
                            "data": {"method": "update", "state": {"value": 4}, "buffer_paths": []},
                        },
                        "buffers": [],
                    }
                )
            )

            async def set_to_4() -> bool:
                return bool(sliders(await widgets(api.http, path))["S"]["value"] == 4)

            await eventually(set_to_4)
    finally:
        await stop_kernel(api, path)


async def test_a_saved_notebook_holds_its_widgets_state(server, api) -> None:
    """As JupyterLab's "save widget state" writes it: viewers without a kernel (nbviewer,
    nbconvert) show the widgets as they were."""
    path = "saved.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    client = await YClient.connect(server.url, TOKENS["alice"], path)
    try:
        await run(api, path, "slider")
        slider = sliders(await widgets(api.http, path))["S"]
        response = await patch(api.http, path, slider["id"], {"state": {"value": 5}})
        assert response.status_code == 200, response.text
        saved = await client.save(request_id=1)
        assert saved["status"] == "success", saved
        metadata = read_notebook(server.root / path)["metadata"]
        state = metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
        assert (state["version_major"], state["version_minor"]) == (2, 0)
        model = state["state"][slider["id"]]
        assert model["model_name"] == "IntSliderModel" and model["state"]["value"] == 5
        # The output refers to that model.
        outputs = read_notebook(server.root / path)["cells"][0]["outputs"]
        view = outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == slider["id"]
    finally:
        await client.close()
        await stop_kernel(api, path)


async def test_a_restart_turns_the_widgets_shown_into_their_text(server, api) -> None:
    """No window keeps a slider that moves and reaches nothing, nor waits for its model."""
    path = "restart.ipynb"
    write_notebook(server.root / path, notebook(code_cell(SLIDER, "slider")))
    client = await YClient.connect(server.url, TOKENS["alice"], path)
    view = "application/vnd.jupyter.widget-view+json"

    def data() -> dict[str, Any]:
        outputs = client.doc.get("cells", type=Array)[0]["outputs"]
        return dict(outputs[0]["data"]) if len(outputs) else {}

    try:
        record = await run(api, path, "slider")
        await until(lambda: view in data(), what="the slider's output")
        await restart(api, record["kernel_id"])
        await until(lambda: data() and view not in data(), what="the view turned to text")
        assert data()["text/plain"].startswith("IntSlider(value=3")
        output = client.doc.get("cells", type=Array)[0]["outputs"][0]
        assert output["output_type"] == "execute_result" and "execution_count" in output
    finally:
        await client.close()
        await stop_kernel(api, path)


async def test_an_output_widget_captures_what_the_run_prints_inside_it(server, api) -> None:
    """As JupyterLab does when it runs the cell itself: printed under `with out:`, it goes
    into the widget (every window shows it there), not into the cell."""
    path = "captured.ipynb"
    code = (
        "import ipywidgets as w\nout = w.Output()\ndisplay(out)\nprint('before')\n"
        "with out:\n    print('inside')\n    print('again')\nprint('after')"
    )
    write_notebook(server.root / path, notebook(code_cell(code, "out")))
    try:
        done = await run(api, path, "out")
        texts = [o.get("text") for o in done["outputs"] if o["output_type"] == "stream"]
        assert "".join(texts) == "before\nafter\n"

        async def captured() -> list[Any]:
            state = await widgets(api.http, path)
            (model,) = [m for m in state.values() if m["model_name"] == "OutputModel"]
            return list(model["state"]["outputs"])

        outputs = await eventually(captured)  # set once the kernel has taken it
        assert outputs == [{"output_type": "stream", "name": "stdout", "text": "inside\nagain\n"}]
    finally:
        await stop_kernel(api, path)
