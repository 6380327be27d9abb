"""Synthetic notebooks: N code cells of a few source lines, each with a short stream output."""

from __future__ import annotations

import functools
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output


@functools.cache
def notebook_bytes(cells: int, output_lines: int = 3) -> bytes:
    """The .ipynb text of a notebook of `cells` code cells (built once per size)."""
    notebook = new_notebook(
        cells=[
            new_code_cell(
                source=f"# cell {i}\nx_{i} = {i} * 2\nfor k in range(3):\n    print(k, x_{i})\n",
                execution_count=i + 1,
                outputs=[
                    new_output(
                        "stream",
                        name="stdout",
                        text="".join(f"{k} {i * 2}\n" for k in range(output_lines)),
                    )
                ],
            )
            for i in range(cells)
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    return nbformat.writes(notebook).encode()


def write_notebook(root: Path, name: str, cells: int) -> str:
    """Write a fresh notebook file under `root`; returns its path relative to the root."""
    (root / name).write_bytes(notebook_bytes(cells))
    return name
