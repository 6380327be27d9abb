/**
 * Read-only viewers: a notebook or file the user may only view opens read-only (no cell or
 * text can be edited, no save, a visible mark), and switches live when their role changes.
 *
 * Where the role comes from:
 * - at open, the contents model: the server says `writable: false` to a user whose role on
 *   the file is below editor (JupyterLab then refuses Ctrl-S with its own message);
 * - while open, the document's room: it tells each peer its role when it joins and at every
 *   change (RAW `{"type": "role", "role", "edit"}`), which is read off the collaboration
 *   provider's socket.
 *
 * An edit the server refused anyway (a role changed between a keystroke and its arrival, a
 * structural change such as deleting a cell) stays in this window's copy only, and the
 * copies would differ from then on: the room says so (RAW `refused` with `reload`), and,
 * when this window changed the content, the document is closed and opened again from the
 * server, with a notification saying why. A window that becomes editable is loaded again
 * too when it holds refused changes (JupyterLab writes a `document_id` after each sync):
 * the room would never take edits that build on them.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import {
  ICollaborativeContentProvider,
  IDocumentProvider
} from '@jupyter/collaborative-drive';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { Cell } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';
import { PanelLayout, Widget } from '@lumino/widgets';

const PLUGIN_ID = 'jupyter-datastore:read-only';
/** The widget factories watched, and the content type their documents have in the room. */
const FACTORIES: { [factory: string]: string } = { Notebook: 'notebook', Editor: 'file' };
/** The mark's toolbar item, and JupyterLab's own (shown at open only, never updated). */
const MARK = 'datastore-read-only';
const LAB_MARK = 'read-only-indicator';
const MARK_CLASS = 'jp-Datastore-readOnly';
const RAW_MESSAGE = 2;
/** How long the notification of a reload stays. */
const RELOAD_TOAST = 15000;

/** What the room says to this peer (RAW messages), as far as read here. */
interface IRaw {
  type?: string;
  role?: string;
  edit?: boolean;
  reason?: string;
  reload?: boolean;
}

/** The parts of y-websocket's provider used here (no dependency on y-websocket). */
interface ISocketProvider {
  ws: WebSocket | null;
  on(name: 'status', f: (event: { status: string }) => void): void;
  off(name: 'status', f: (event: { status: string }) => void): void;
}

/** The collaboration provider of a document: jupyter-docprovider's has `wsProvider`. */
type Provider = IDocumentProvider & { wsProvider?: ISocketProvider | null };

/** The parts of a Y type and a Y document used here (no dependency on yjs). */
interface IYType {
  _item: { parent: unknown } | null;
}
interface IYDoc {
  getMap(name: string): unknown;
  on(
    name: 'afterTransaction',
    f: (transaction: { local: boolean; changed: Map<IYType, unknown> }) => void
  ): void;
}

/** The top-level type a (nested) Y type belongs to. */
function rootOf(type: IYType): IYType {
  let root = type;
  while (root._item !== null && root._item.parent) {
    root = root._item.parent as IYType;
  }
  return root;
}

/** A RAW message's JSON, or null for anything else (sync, awareness, malformed). */
function readRaw(data: unknown): IRaw | null {
  if (!(data instanceof ArrayBuffer)) {
    return null;
  }
  const bytes = new Uint8Array(data);
  // The message type and the string's length are lib0 var-uints.
  let offset = 0;
  const varUint = (): number => {
    let value = 0;
    for (let shift = 0; offset < bytes.length && shift < 35; shift += 7) {
      const byte = bytes[offset++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        return value;
      }
    }
    return -1;
  };
  if (varUint() !== RAW_MESSAGE) {
    return null;
  }
  const length = varUint();
  if (length < 0 || offset + length > bytes.length) {
    return null;
  }
  try {
    const text = new TextDecoder().decode(bytes.subarray(offset, offset + length));
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as IRaw) : null;
  } catch {
    return null;
  }
}

/** The read-only state of one open document (one context), shown in all its widgets. */
class DocumentAccess {
  constructor(
    context: DocumentRegistry.Context,
    factory: string,
    provider: Provider | null,
    docManager: IDocumentManager | null
  ) {
    this._context = context;
    this._factory = factory;
    this._provider = provider;
    this._docManager = docManager;
    void context.ready.then(() => {
      if (this._edit === null && context.contentsModel?.writable === false) {
        this._set(false, null);
      }
      this._follow();
    });
    context.disposed.connect(() => this._stop());
    const ydoc = (context.model.sharedModel as { ydoc?: IYDoc }).ydoc;
    ydoc?.on('afterTransaction', transaction => {
      if (!transaction.local || this._edit === true) {
        return;
      }
      this._unsent = true;
      if (!this._edited) {
        const state = ydoc.getMap('state');
        this._edited = Array.from(transaction.changed.keys()).some(t => rootOf(t) !== state);
      }
    });
  }

  /** A widget of the document: gets the mark and the current state. */
  add(widget: IDocumentWidget): void {
    this._widgets.add(widget);
    widget.disposed.connect(() => this._widgets.delete(widget));
    const notebook = widget.content instanceof Notebook ? widget.content : null;
    notebook?.model?.cells.changed.connect(() => this._apply(widget));
    this._apply(widget);
  }

  /** Read the room's messages on the provider's socket, and again after each reconnect. */
  private _follow(): void {
    const sockets = this._provider?.wsProvider;
    if (!sockets) {
      return; // not a collaborative document: the contents model said all there is
    }
    this._sockets = sockets;
    sockets.on('status', this._onStatus);
    this._listen(sockets.ws);
  }

  private _onStatus = (event: { status: string }): void => {
    if (event.status === 'connected') {
      this._listen(this._sockets?.ws ?? null);
    }
  };

  private _listen(socket: WebSocket | null): void {
    if (socket === this._socket) {
      return;
    }
    this._socket?.removeEventListener('message', this._onMessage);
    this._socket = socket;
    socket?.addEventListener('message', this._onMessage);
  }

  private _onMessage = (event: MessageEvent): void => {
    const raw = readRaw(event.data);
    if (raw?.type === 'role' && typeof raw.edit === 'boolean') {
      this._set(raw.edit, typeof raw.role === 'string' ? raw.role : null);
    } else if (raw?.type === 'refused' && raw.reload === true && this._edited) {
      void this._reload(`your change was not taken (${raw.reason ?? 'not allowed'})`, 'warning');
    }
  };

  private _stop(): void {
    this._sockets?.off('status', this._onStatus);
    this._listen(null);
    this._sockets = null;
  }

  private _set(edit: boolean, role: string | null): void {
    if (edit === this._edit && role === this._role) {
      return;
    }
    if (edit && this._edit === false && this._unsent) {
      // Edits made from here would depend on changes the room never took, and wait for
      // them for ever: start from a fresh copy.
      void this._reload('you may edit it now', 'info');
      return;
    }
    this._edit = edit;
    this._role = role;
    const model = this._context.model;
    model.readOnly = !edit;
    // JupyterLab's save command asks the contents model; it was read at open.
    const context = this._context as unknown as {
      _updateContentsModel?: (model: object) => void;
    };
    const contents = this._context.contentsModel;
    if (contents && contents.writable !== edit && context._updateContentsModel) {
      context._updateContentsModel.call(this._context, { ...contents, writable: edit });
    }
    for (const widget of this._widgets) {
      this._apply(widget);
    }
  }

  /** The state as the widget shows it: editors locked or not, the mark shown or not. */
  private _apply(widget: IDocumentWidget): void {
    const readOnly = this._edit === false;
    const content = widget.content;
    if (content instanceof Notebook) {
      for (const cell of content.widgets) {
        lockCell(cell, () => this._edit === false);
      }
    } else {
      const editor = (content as { editor?: { setOption(o: string, v: unknown): void } })
        .editor;
      editor?.setOption('readOnly', readOnly);
    }
    this._mark(widget, readOnly);
  }

  private _mark(widget: IDocumentWidget, shown: boolean): void {
    const toolbar = widget.toolbar;
    const names = Array.from(toolbar.names());
    const layout = toolbar.layout as PanelLayout;
    const labMark = names.indexOf(LAB_MARK);
    if (labMark >= 0) {
      layout.widgets[labMark].dispose(); // ours says the same, and follows changes
    }
    let mark = this._marks.get(widget);
    if (!mark) {
      mark = new Widget();
      mark.addClass(MARK_CLASS);
      this._marks.set(widget, mark);
      toolbar.insertItem(0, MARK, mark);
    }
    const who = this._role ? ` (you are ${this._role === 'none' ? 'no one here' : `a ${this._role}`})` : '';
    mark.node.textContent = 'Read-only';
    mark.node.title = `You may view ${this._context.path} but not change or save it${who}.`;
    mark.setHidden(!shown);
  }

  /** Close the document's widgets and open it again: a fresh copy from the server. */
  private async _reload(why: string, type: 'info' | 'warning'): Promise<void> {
    if (this._reloading || this._context.isDisposed) {
      return;
    }
    this._reloading = true;
    const path = this._context.path;
    Notification.emit(`${path}: ${why}. It was loaded again from the server.`, type, {
      autoClose: RELOAD_TOAST
    });
    this._context.model.dirty = false; // nothing of it is to be saved: no prompt on close
    for (const widget of Array.from(this._widgets)) {
      widget.dispose();
    }
    this._docManager?.openOrReveal(path, this._factory);
  }

  private _context: DocumentRegistry.Context;
  private _factory: string;
  private _provider: Provider | null;
  private _docManager: IDocumentManager | null;
  private _sockets: ISocketProvider | null = null;
  private _socket: WebSocket | null = null;
  /** Whether the user may edit: null while unknown (editable, as JupyterLab opens it). */
  private _edit: boolean | null = null;
  private _role: string | null = null;
  private _reloading = false;
  /** Whether this window changed the content (not only JupyterLab's own bookkeeping in the
   * `state` map, such as the `document_id` it writes after each sync, which the server
   * refuses from a viewer too but which shows nothing). */
  private _edited = false;
  /** Whether this window changed anything (bookkeeping too) while it could not edit: the
   * room refused it, so this copy can no longer send edits the room would take. */
  private _unsent = false;
  private _widgets = new Set<IDocumentWidget>();
  private _marks = new WeakMap<IDocumentWidget, Widget>();
}

/** A cell's editor locked, or unlocked to what the cell's metadata says (`editable: false`
 * stays). The editor only: the cell's own `readOnly` would write `editable` into the
 * notebook, a change of its content. A cell not drawn yet gets its editor later. */
function lockCell(cell: Cell, readOnly: () => boolean): void {
  void cell.ready.then(() => {
    const locked = readOnly() || cell.model.getMetadata('editable') === false;
    cell.editor?.setOption('readOnly', locked);
  });
}

/** The room provider of a document, if it is collaborative (keys: format:type:path). */
function providerOf(
  drive: ICollaborativeContentProvider | null,
  context: DocumentRegistry.Context,
  contentType: string
): Provider | null {
  if (!drive) {
    return null;
  }
  for (const [key, provider] of drive.providers) {
    const [, type, ...path] = key.split(':');
    if (type === contentType && path.join(':') === context.localPath) {
      return provider as Provider;
    }
  }
  return null;
}

export const readOnlyPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Documents the user may only view open read-only, and switch live when their role changes.',
  autoStart: true,
  optional: [ICollaborativeContentProvider, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    drive: ICollaborativeContentProvider | null,
    docManager: IDocumentManager | null
  ): void => {
    const open = new WeakMap<DocumentRegistry.Context, DocumentAccess>();
    for (const [factory, contentType] of Object.entries(FACTORIES)) {
      app.docRegistry.addWidgetExtension(factory, {
        createNew: (widget: IDocumentWidget, context: DocumentRegistry.Context) => {
          let access = open.get(context);
          if (!access) {
            const provider = providerOf(drive, context, contentType);
            access = new DocumentAccess(context, factory, provider, docManager);
            open.set(context, access);
          }
          access.add(widget);
        }
      });
    }
  }
};
