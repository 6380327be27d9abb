/**
 * Trust that changes while a notebook is open: JupyterLab reads a cell's `trusted` metadata
 * only when it makes the cell's model, so a cell the server runs (it marks the cell trusted,
 * as JupyterLab does when it runs one), or one whose trust the server takes back (an
 * editor's change to its outputs), would keep rendering as it did until a reload. This
 * follows each cell's metadata and sets the model's trust, which renders its outputs again:
 * as HTML, JavaScript and widgets when trusted, as safe text and images when not.
 *
 * JupyterLab writes outputs it renders again back into the shared document (a cell's
 * outputs are replaced when its trust changes): when a run trusts a cell, its outputs are
 * cleared first, so nothing is written back.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICellModel } from '@jupyterlab/cells';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';

const PLUGIN_ID = 'jupyter-datastore:trust';

/** A change of one metadata key, as a cell model signals it. */
interface IMetadataChange {
  key: string;
}

function onMetadata(model: ICellModel, change: IMetadataChange): void {
  if (change.key === 'trusted') {
    // Once the whole change is applied: a run clears the outputs in the same change, and
    // outputs re-rendered before that would be written back into the document.
    queueMicrotask(() => sync(model));
  }
}

/** The model's trust as the shared cell says it; its outputs render again if it changed. */
function sync(model: ICellModel): void {
  const trusted = !model.isDisposed && model.getMetadata('trusted') === true;
  if (!model.isDisposed && model.type === 'code' && model.trusted !== trusted) {
    model.trusted = trusted;
  }
}

/** Follow the trust of every cell of a notebook, those added later too. */
function follow(model: INotebookModel): void {
  const watch = (cell: ICellModel): void => {
    cell.metadataChanged.connect(onMetadata);
    sync(cell); // made before the change reached this window, with the flag it had then
  };
  for (const cell of model.cells) {
    watch(cell);
  }
  model.cells.changed.connect((_, change) => {
    if (change.type === 'add' || change.type === 'set') {
      change.newValues.forEach(watch);
    }
  });
}

export const trustPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "Open notebooks follow the trust the server gives or takes back from cells.",
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (_panel: NotebookPanel, context: DocumentRegistry.IContext<INotebookModel>) => {
        void context.ready.then(() => follow(context.model));
      }
    });
  }
};
