/**
 * Prompts of cells run by the server: `input()` and `getpass()` as JupyterLab's own stdin box.
 *
 * The server puts a run's pending prompt in the notebook's shared document, as the
 * `input_request` key of the cell's Y map ({prompt, password, execution_id}), and removes it
 * when the prompt is answered (from any window or client), the run is cancelled or it ends.
 * So every window that has the notebook open sees it, and a window opened (or reloaded) while
 * the prompt waits sees it too: this plugin watches that key in each code cell of each open
 * notebook and shows JupyterLab's `Stdin` widget (password masked) in the cell's output area
 * while it is there. Enter POSTs the answer to `/api/datastore/executions/{id}/input`
 * instead of sending it to a kernel; the box goes away when the server removes the key.
 *
 * The box is shown to users whose role on the notebook lets them answer (runner or owner,
 * asked of `GET /api/datastore/permissions/{path}`); when the role cannot be read the box
 * is shown and a refusal of the server is shown as an error notification.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { OutputArea, Stdin } from '@jupyterlab/outputarea';
import { Kernel, KernelMessage, ServerConnection } from '@jupyterlab/services';
import { Panel, PanelLayout } from '@lumino/widgets';

const PLUGIN_ID = 'jupyter-datastore:prompts';
const EXECUTIONS = 'api/datastore/executions';
const PERMISSIONS = 'api/datastore/permissions';
/** Roles that may answer a prompt (the server decides; this only spares a useless box). */
const ANSWERING = new Set(['runner', 'owner']);
/** The key of a cell's Y map that holds a server run's pending prompt. */
const KEY = 'input_request';

/** A pending prompt, as the server writes it in the cell. */
interface IRequest {
  prompt: string;
  password: boolean;
  execution_id: string;
}

/** The part of a Y map used here (kept structural: no dependency on yjs). */
interface IYMap {
  get(key: string): unknown;
  observe(f: (event: { keysChanged: Set<string> }) => void): void;
  unobserve(f: (event: { keysChanged: Set<string> }) => void): void;
}

/** The part of a cell widget used here. */
interface ICellLike {
  isDisposed: boolean;
  disposed: { connect(f: () => void): void };
  model: { type: string; sharedModel: unknown };
  outputArea?: OutputArea;
}

function asRequest(value: unknown): IRequest | null {
  if (typeof value !== 'object' || value === null) {
    return null;
  }
  const found = value as { [key: string]: unknown };
  if (typeof found.execution_id !== 'string') {
    return null;
  }
  return {
    prompt: typeof found.prompt === 'string' ? found.prompt : '',
    password: found.password === true,
    execution_id: found.execution_id
  };
}

/** Shows and removes the stdin box of one code cell. */
class CellPrompt {
  constructor(
    cell: ICellLike,
    ymap: IYMap,
    private _owner: Prompts,
    private _path: () => string
  ) {
    this._cell = cell;
    this._ymap = ymap;
    this._observer = event => {
      if (event.keysChanged.has(KEY)) {
        void this.update();
      }
    };
    ymap.observe(this._observer);
    // The output area drops its widgets when the outputs are cleared: show the box again.
    cell.outputArea?.model.changed.connect(this._onOutputs, this);
    cell.disposed.connect(() => this.dispose());
    void this.update();
  }

  dispose(): void {
    this._ymap.unobserve(this._observer);
    this._cell.outputArea?.model.changed.disconnect(this._onOutputs, this);
    this._remove();
  }

  /** Follow the cell's key: a box while a prompt waits, none otherwise. */
  async update(): Promise<void> {
    const request = asRequest(this._ymap.get(KEY));
    if (request === null) {
      this._remove();
      return;
    }
    if (this._shown === request.execution_id && this._panel && !this._panel.isDisposed) {
      return;
    }
    this._remove();
    this._shown = request.execution_id;
    const allowed = await this._owner.mayAnswer(this._path());
    // The prompt may have been answered while the role was asked.
    const now = asRequest(this._ymap.get(KEY));
    if (!allowed || now === null || now.execution_id !== request.execution_id) {
      if (now === null) {
        this._shown = null;
      }
      return;
    }
    if (this._shown === request.execution_id && !this._panel) {
      this._show(now);
    }
  }

  private _onOutputs(): void {
    if (this._panel?.isDisposed) {
      this._panel = null;
      this._shown = null;
      void this.update();
    }
  }

  /** JupyterLab's own stdin box, as OutputArea.onInputRequest makes it. */
  private _show(request: IRequest): void {
    const area = this._cell.outputArea;
    if (!area || area.isDisposed) {
      return;
    }
    const panel = new Panel();
    panel.addClass('jp-OutputArea-child');
    panel.addClass('jp-OutputArea-stdin-item');
    panel.addClass('jp-datastore-prompt');
    const prompt = area.contentFactory.createOutputPrompt();
    prompt.addClass('jp-OutputArea-prompt');
    panel.addWidget(prompt);
    const future = {
      sendInputReply: (content: KernelMessage.IInputReply): void => {
        const value = 'value' in content ? content.value : '';
        void this._owner.answer(request.execution_id, value).then(ok => {
          if (!ok && this._panel === panel) {
            // Refused or failed: a fresh box while the prompt still waits.
            this._remove();
            void this.update();
          }
        });
      }
    } as unknown as Kernel.IShellFuture;
    const header = {
      msg_id: request.execution_id,
      session: '',
      username: '',
      date: '',
      msg_type: 'input_request',
      version: '5.3'
    } as unknown as KernelMessage.IInputReplyMsg['parent_header'];
    const input = area.contentFactory.createStdin({
      parent_header: header,
      prompt: request.prompt,
      password: request.password,
      future
    });
    input.addClass('jp-OutputArea-output');
    panel.addWidget(input);
    (area.layout as PanelLayout).addWidget(panel);
    this._panel = panel;
    if (input instanceof Stdin) {
      // The answer's echo comes from the server, in the cell's outputs.
      void input.value.then(() => panel.addClass('jp-OutputArea-stdin-hiding'));
    }
  }

  private _remove(): void {
    const panel = this._panel;
    this._panel = null;
    this._shown = null;
    if (panel && !panel.isDisposed) {
      panel.dispose();
    }
  }

  private _cell: ICellLike;
  private _ymap: IYMap;
  private _observer: (event: { keysChanged: Set<string> }) => void;
  /** The execution whose box is shown (or about to be). */
  private _shown: string | null = null;
  private _panel: Panel | null = null;
}

/** Watches the code cells of the open notebooks. */
class Prompts {
  constructor(app: JupyterFrontEnd) {
    this._app = app;
    this._settings = app.serviceManager.serverSettings;
  }

  async track(panel: NotebookPanel): Promise<void> {
    await panel.context.ready;
    const notebook = panel.content;
    const path = (): string =>
      this._app.serviceManager.contents.localPath(panel.context.path);
    const scan = (): void => {
      for (const widget of notebook.widgets) {
        const cell = widget as unknown as ICellLike;
        if (cell.model.type !== 'code' || cell.isDisposed || this._cells.has(cell)) {
          continue;
        }
        const ymap = (cell.model.sharedModel as { ymodel?: IYMap }).ymodel;
        if (!ymap || typeof ymap.observe !== 'function') {
          continue; // not a shared (Y) document
        }
        this._cells.set(cell, new CellPrompt(cell, ymap, this, path));
      }
    };
    scan();
    // Cell widgets are made by the notebook when its model's cells change.
    const changed = (): void => {
      scan();
      window.setTimeout(scan, 0);
    };
    notebook.model?.cells.changed.connect(changed);
    notebook.modelChanged.connect(() => {
      notebook.model?.cells.changed.connect(changed);
      changed();
    });
  }

  /** Whether the user's role on the notebook lets them answer; true when unknown. */
  async mayAnswer(path: string): Promise<boolean> {
    const url = URLExt.join(this._settings.baseUrl, PERMISSIONS, URLExt.encodeParts(path));
    try {
      const response = await ServerConnection.makeRequest(url, {}, this._settings);
      if (!response.ok) {
        return response.status !== 403; // not even a viewer: no box
      }
      const role = ((await response.json()) as { role?: unknown }).role;
      return typeof role !== 'string' || ANSWERING.has(role);
    } catch (reason) {
      console.warn('jupyter-datastore: role not read', reason);
      return true;
    }
  }

  /** POST the answer; false (and an error notification) when the server refused it. */
  async answer(executionId: string, value: string): Promise<boolean> {
    const url = URLExt.join(
      this._settings.baseUrl,
      EXECUTIONS,
      encodeURIComponent(executionId),
      'input'
    );
    const init = { method: 'POST', body: JSON.stringify({ value }) };
    let detail: string;
    try {
      const response = await ServerConnection.makeRequest(url, init, this._settings);
      if (response.ok) {
        return true;
      }
      detail = `${response.status}`;
      try {
        const body = (await response.json()) as { message?: string; reason?: string };
        detail += `: ${body.message ?? body.reason ?? ''}`;
      } catch {
        // no JSON body
      }
      if (response.status === 409) {
        return true; // no longer waiting: answered elsewhere, or over
      }
    } catch (reason) {
      detail = String(reason);
    }
    Notification.error(`The answer was not sent (${detail})`, { autoClose: 10000 });
    return false;
  }

  private _app: JupyterFrontEnd;
  private _settings: ServerConnection.ISettings;
  private _cells = new WeakMap<ICellLike, CellPrompt>();
}

export const promptsPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "The input() and getpass() prompts of cells run by the server, as JupyterLab's stdin box.",
  autoStart: true,
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker | null): void => {
    if (!tracker) {
      return;
    }
    const prompts = new Prompts(app);
    tracker.forEach(panel => void prompts.track(panel));
    tracker.widgetAdded.connect((_, panel) => void prompts.track(panel));
  }
};
