/**
 * Revealing a notebook's cell: make it the active one and scroll to it, once the notebook
 * has it (shared by the notification feed and the Datastore panel).
 */

/** How long to wait for a notebook's cell to arrive before giving up on revealing it. */
const CELL_WAIT = 10000;

/** The part of a notebook panel used to reveal a cell (kept structural on purpose:
 * Notebook 7 and JupyterLab share it, and nothing more of the notebook is needed). */
export interface ICellHost {
  context?: { ready: Promise<void> };
  revealed?: Promise<void>;
  content?: {
    widgets: ReadonlyArray<{ model: { id: string } }>;
    activeCellIndex: number;
    scrollToItem?: (index: number) => Promise<void>;
    model?: {
      cells: { changed: { connect(f: () => void): void; disconnect(f: () => void): void } };
    } | null;
  };
}

/** Make a notebook's cell the active one and scroll to it, once the notebook has it. */
export async function revealCell(widget: ICellHost, cellId: string): Promise<void> {
  await widget.context?.ready;
  await widget.revealed;
  const notebook = widget.content;
  if (!notebook || !Array.isArray(notebook.widgets)) {
    return; // not a notebook
  }
  const select = (): boolean => {
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      return false;
    }
    notebook.activeCellIndex = index;
    void notebook.scrollToItem?.(index);
    return true;
  };
  const cells = notebook.model?.cells;
  if (select() || !cells) {
    return;
  }
  // The document's content may still be on its way from the server.
  await new Promise<void>(resolve => {
    const changed = (): void => {
      if (select()) {
        done();
      }
    };
    const done = (): void => {
      cells.changed.disconnect(changed);
      window.clearTimeout(timer);
      resolve();
    };
    const timer = window.setTimeout(done, CELL_WAIT);
    cells.changed.connect(changed);
  });
}
