"""Notebook files for tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def code_cell(
    source: str, cell_id: str, outputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": cell_id,
        "metadata": {},
        "outputs": outputs or [],
        "source": source,
    }


def markdown_cell(source: str, cell_id: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def notebook(*cells: dict[str, Any]) -> dict[str, Any]:
    return {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(path: Path, nb: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook on disk; jupyter_server rewrites files in place, so retry a torn read."""
    for _ in range(50):
        try:
            return dict(json.loads(path.read_text()))
        except ValueError:
            time.sleep(0.01)
    return dict(json.loads(path.read_text()))


def sources(nb: dict[str, Any]) -> list[str]:
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"]
    ]
