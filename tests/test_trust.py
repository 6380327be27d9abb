"""Trust, end to end: a signed notebook is trusted when the server loads it, a cell the
server runs is trusted, a notebook saved with every output trusted is signed, and only a
runner's changes can make a cell trusted (documents/trust.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from execapi import ExecApi
from nbformat.sign import NotebookNotary
from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array, Map
from roles import TOKENS, http, share
from yclient import YClient, until

HTML = {"output_type": "display_data", "data": {"text/html": "<b>x</b>"}, "metadata": {}}


def notary_of(server: Any) -> NotebookNotary:
    """The server's own notary (its Jupyter data folder)."""
    return NotebookNotary(data_dir=str(server.home / "data"))


def sign(server: Any, path: Path) -> None:
    with notary_of(server) as notary:
        notary.sign(nbformat.read(path, as_version=4))


def signed(server: Any, path: Path) -> bool:
    with notary_of(server) as notary:
        return bool(notary.check_signature(nbformat.read(path, as_version=4)))


def trusted(client: YClient) -> list[Any]:
    return [cell["metadata"].get("trusted") for cell in client.doc.get("cells", type=Array)]


async def test_a_signed_notebook_is_trusted_and_an_unsigned_ones_active_outputs_are_not(
    roles_server,
) -> None:
    server = roles_server
    cells = [code_cell("h()", "html", [HTML]), code_cell("print(1)", "plain")]
    write_notebook(server.root / "signed.ipynb", notebook(*cells))
    # Not the same content: a signature is the content's, whatever the file's name.
    write_notebook(server.root / "unsigned.ipynb", notebook(*cells, code_cell("", "more")))
    sign(server, server.root / "signed.ipynb")
    alice = await YClient.connect(server.url, TOKENS["alice"], "signed.ipynb")
    other = await YClient.connect(server.url, TOKENS["alice"], "unsigned.ipynb")
    try:
        assert trusted(alice) == [True, True]
        assert trusted(other) == [False, True, True]  # a cell with no active output is safe
    finally:
        await alice.close()
        await other.close()


async def test_a_cell_run_by_the_server_is_trusted_and_the_saved_file_signed(roles_server) -> None:
    server = roles_server
    path = server.root / "run.ipynb"
    code = "from IPython.display import HTML, display\ndisplay(HTML('<i>hi</i>'))"
    write_notebook(path, notebook(code_cell(code, "c1", [HTML])))
    alice = await YClient.connect(server.url, TOKENS["alice"], "run.ipynb")
    api = ExecApi(server.url, TOKENS["alice"])
    try:
        assert trusted(alice) == [False]
        (record,) = await api.run("run.ipynb", "c1")
        await api.wait(record["id"])
        await until(lambda: trusted(alice) == [True], what="the run to trust the cell")
        outputs = alice.doc.get("cells", type=Array)[0]["outputs"]
        assert outputs[0]["data"]["text/html"] == "<i>hi</i>"
        saved = await alice.save(request_id=1)
        assert saved["status"] == "success", saved
        assert "trusted" not in path.read_text()  # the flag never reaches the file
        assert signed(server, path)
        # The kernel is not needed any more.
        kernels = (await api.http.get("/api/kernels")).json()
        for kernel in kernels:
            await api.http.delete(f"/api/kernels/{kernel['id']}")
    finally:
        await alice.close()
        await api.close()


async def test_an_editor_cannot_make_a_cell_trusted_for_other_users(roles_server) -> None:
    server = roles_server
    cells = [code_cell("a", "a", [HTML]), code_cell("b", "b", [HTML])]
    write_notebook(server.root / "shared.ipynb", notebook(*cells))
    sign(server, server.root / "shared.ipynb")
    await share(server, "shared.ipynb", {"users": {"bob": "editor", "carol": "runner"}})
    bob = await YClient.connect(server.url, TOKENS["bob"], "shared.ipynb")
    carol = await YClient.connect(server.url, TOKENS["carol"], "shared.ipynb")
    try:
        assert trusted(carol) == [True, True]
        # bob's script in a trusted cell's outputs: the cell is no longer trusted anywhere.
        script = {**HTML, "data": {"text/html": "<script>steal()</script>"}}
        bob.doc.get("cells", type=Array)[0]["outputs"].append(Map(script))
        await until(lambda: trusted(carol) == [False, True], what="the cell untrusted")
        await until(lambda: trusted(bob) == [False, True], what="bob told so too")
        # Nor can he trust it again.
        bob.doc.get("cells", type=Array)[0]["metadata"]["trusted"] = True
        source = bob.doc.get("cells", type=Array)[1]["source"]
        source += " # bob"  # his code edits go through, and keep the trust
        await until(lambda: "# bob" in str(carol.doc.get("cells", type=Array)[1]["source"]))
        await until(lambda: trusted(bob) == [False, True], what="bob's flag cleared")
        assert trusted(carol) == [False, True]
        # A runner's trust stands (they can run any code: it gives them nothing more).
        carol.doc.get("cells", type=Array)[0]["metadata"]["trusted"] = True
        await until(lambda: trusted(bob) == [True, True], what="carol's trust at bob")
    finally:
        await bob.close()
        await carol.close()


async def test_only_a_runner_signs_a_notebook_through_the_contents_api(roles_server) -> None:
    """jupyter_server signs a notebook saved with every cell marked trusted, and its trust
    route signs a file as it is: an editor may do neither; a user with no role, nothing."""
    server = roles_server
    path = server.root / "upload.ipynb"
    write_notebook(path, notebook(code_cell("a", "a", [HTML])))
    await share(server, "upload.ipynb", {"users": {"bob": "editor", "carol": "runner"}})
    model = nbformat.read(path, as_version=4)
    model.cells[0].metadata["trusted"] = True
    body = {"type": "notebook", "format": "json", "content": model}
    for user, status in (("mallory", 403), ("bob", 403), ("carol", 200)):
        async with http(server, user) as client:
            saved = await client.put("/api/contents/upload.ipynb", json=body)
            assert saved.status_code == status, (user, saved.text)
            if status == 403:
                assert not signed(server, path)
    assert signed(server, path)
    write_notebook(path, notebook(code_cell("b", "a", [HTML])))
    for user, status in (("mallory", 403), ("bob", 403), ("carol", 201)):
        async with http(server, user) as client:
            trusting = await client.post("/api/contents/upload.ipynb/trust")
            assert trusting.status_code == status, (user, trusting.text)
    assert signed(server, path)
    # An editor's save of cells not marked trusted is theirs to make.
    async with http(server, "bob") as client:
        model.cells[0].metadata.pop("trusted")
        saved = await client.put("/api/contents/upload.ipynb", json=body)
        assert saved.status_code == 200, saved.text
