/**
 * Opening a document at a cell: make it the active one and scroll to it, once the notebook
 * has it (shared by the notification feed and the Datastore panel).
 */

import { JupyterFrontEnd } from '@jupyterlab/application';

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

/** Open a document (or show it, where this window shows it already), at a cell if named.
 *
 * A document already in the main area is activated and revealed in place: Notebook 7's
 * notebook page shows one, and its opener (behind `docmanager:open`) would open it in a new
 * tab and dispose of the page's own widget. */
export async function openAt(
  app: JupyterFrontEnd,
  path: string,
  cellId: string | null
): Promise<void> {
  let widget: ICellHost | undefined;
  for (const shown of app.shell.widgets('main')) {
    const context = (shown as { context?: { path?: string } }).context;
    if (context?.path === path) {
      app.shell.activateById(shown.id);
      widget = shown as ICellHost;
      break;
    }
  }
  if (!widget) {
    widget = (await app.commands.execute('docmanager:open', { path })) as ICellHost | undefined;
  }
  if (cellId && widget) {
    await revealCell(widget, cellId);
  }
}
