"""The Python client of jupyter-datastore: open notebooks and files live, edit them, run
their cells on the server, and watch the server's state.

```py
from jupyter_datastore.client import Client

async with Client("http://localhost:8888", token) as client:
    notebook = await client.open_notebook("analysis.ipynb")
    notebook.cells[0].set_source("print('hello')")
    [run] = await notebook.execute([notebook.cells[0].id])
    print(run.status, notebook.cells[0].outputs)
```

`jupyter_datastore.client.sync.connect` gives the same API, blocking.
"""

from .client import Client, Execution
from .documents import Cell, Notebook, TextFile
from .errors import (
    BadRequest,
    ClientError,
    Conflict,
    ConnectionLost,
    EditsDiscarded,
    ExecutionFailed,
    Forbidden,
    NotFound,
    ServerError,
)
from .room import Backoff
from .state import StateChange, StateChanges, StateView

__all__ = [
    "Backoff",
    "BadRequest",
    "Cell",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionLost",
    "EditsDiscarded",
    "Execution",
    "ExecutionFailed",
    "Forbidden",
    "NotFound",
    "Notebook",
    "ServerError",
    "StateChange",
    "StateChanges",
    "StateView",
    "TextFile",
]
