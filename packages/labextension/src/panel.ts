/**
 * The Datastore panel: the server's kernels, sessions, terminals, executions and open
 * documents, live (no polling), with a filterable tail of the events the user may see.
 *
 * The state comes from `WS /api/datastore/state/subscribe` (panelfeed.ts); each change
 * updates only its own row (rows carry `data-*` ids: `data-kernel-id`, `data-session-id`,
 * `data-terminal-name`, `data-execution-id`, `data-document-id`, `data-event-id`). Actions
 * (kernels: interrupt, restart, shut down through jupyter_server's REST; executions: cancel,
 * interrupt, answer input through ours) show only where the user's role allows them (read
 * from `GET /api/datastore/permissions/{path}`); a refusal shows the server's message as a
 * JupyterLab notification. Clicking an execution opens its notebook at its cell.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { openAt } from './cells';
import {
  Change,
  Entry,
  EventFeed,
  FeedStatus,
  IStateListener,
  ServerEvent,
  State,
  StateFeed
} from './panelfeed';

const PLUGIN_ID = 'jupyter-datastore:panel';
const COMMAND = 'datastore:open-panel';
const PERMISSIONS = 'api/datastore/permissions';
const EXECUTIONS = 'api/datastore/executions';
const KERNELS = 'api/kernels';
/** Events kept in the tail. */
const TAIL = 200;
const MAPS = ['kernels', 'sessions', 'terminals', 'executions', 'documents'] as const;
type MapName = (typeof MAPS)[number];
const RANK: { [role: string]: number } = {
  none: 0,
  viewer: 1,
  editor: 2,
  runner: 3,
  owner: 4
};
const ACTIVE = new Set(['queued', 'running', 'awaiting_input']);

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161">
<path d="M12 2C7.6 2 4 3.3 4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5c0-1.7-3.6-3-8-3zm0 2c3.9 0 6 1.1 6 1s-2.1 1-6 1-6-.9-6-1 2.1-1 6-1zM6 7.4C7.5 8 9.6 8.3 12 8.3s4.5-.3 6-.9V11c0 .3-2.1 1.3-6 1.3S6 11.3 6 11V7.4zm0 5.9c1.5.6 3.6.9 6 .9s4.5-.3 6-.9V19c0 .1-2.1 1-6 1s-6-.9-6-1v-5.7z"/>
</g></svg>`;

export const datastoreIcon = new LabIcon({
  name: 'jupyter-datastore:panel',
  svgstr: ICON_SVG
});

function short(id: string): string {
  return id.slice(0, 8);
}

function text(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  return value === undefined || value === null ? '' : String(value);
}

function duration(start: unknown, end: unknown): string {
  if (typeof start !== 'string' || typeof end !== 'string') {
    return '';
  }
  const ms = Date.parse(end) - Date.parse(start);
  if (!Number.isFinite(ms) || ms < 0) {
    return '';
  }
  if (ms < 1000) {
    return `${ms} ms`;
  }
  if (ms < 60000) {
    return `${(ms / 1000).toFixed(1)} s`;
  }
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  content?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (content !== undefined) {
    node.textContent = content;
  }
  return node;
}

/** Set a text only when it changed (no needless DOM writes). */
function setText(node: HTMLElement, value: string): void {
  if (node.textContent !== value) {
    node.textContent = value;
  }
}

/** The server's message in a refusal. */
async function refusal(response: Response): Promise<string> {
  let body = '';
  try {
    body = await response.text();
    const parsed = JSON.parse(body) as { [key: string]: unknown };
    for (const key of ['message', 'detail', 'reason', 'error']) {
      if (typeof parsed[key] === 'string' && parsed[key]) {
        return parsed[key] as string;
      }
    }
  } catch {
    // not JSON: the body as it is
  }
  return body.trim() || `${response.status} ${response.statusText}`;
}

/** The user's roles on paths, asked once per path (again after a reconnection). */
class Roles {
  constructor(settings: ServerConnection.ISettings) {
    this._settings = settings;
  }

  /** The role, '' when it could not be read. */
  role(path: string): Promise<string> {
    let known = this._known.get(path);
    if (known === undefined) {
      known = this._ask(path);
      this._known.set(path, known);
    }
    return known;
  }

  /** Whether the role on every path is at least `least` (true when a role is unknown: the
   * server decides anyway). */
  async atLeast(paths: string[], least: string): Promise<boolean> {
    const roles = await Promise.all(paths.map(path => this.role(path)));
    return roles.every(role => role === '' || (RANK[role] ?? 0) >= RANK[least]);
  }

  clear(): void {
    this._known.clear();
  }

  private async _ask(path: string): Promise<string> {
    const url =
      URLExt.join(this._settings.baseUrl, PERMISSIONS) + '/' + URLExt.encodeParts(path);
    try {
      const response = await ServerConnection.makeRequest(url, {}, this._settings);
      if (response.status === 403 || response.status === 404) {
        return 'none';
      }
      if (!response.ok) {
        return '';
      }
      const role = ((await response.json()) as { role?: unknown }).role;
      return typeof role === 'string' ? role : '';
    } catch (reason) {
      console.warn('jupyter-datastore: role not read', reason);
      return '';
    }
  }

  private _settings: ServerConnection.ISettings;
  private _known = new Map<string, Promise<string>>();
}

/** A collapsible list of rows, one per key, updated in place. */
class Section {
  constructor(
    parent: HTMLElement,
    name: string,
    title: string,
    private _row: (key: string) => HTMLElement,
    private _update: (row: HTMLElement, key: string, entry: Entry) => void,
    private _newestFirst = false
  ) {
    this.node = el('section', `jp-Datastore-section jp-Datastore-section-${name}`);
    this.node.dataset.section = name;
    const header = el('button', 'jp-Datastore-sectionHeader');
    header.type = 'button';
    header.title = `Show or hide ${title.toLowerCase()}`;
    header.appendChild(el('span', 'jp-Datastore-caret'));
    header.appendChild(el('span', 'jp-Datastore-sectionTitle', title));
    this._count = el('span', 'jp-Datastore-count', '0');
    header.appendChild(this._count);
    header.onclick = () => {
      this.node.classList.toggle('jp-mod-collapsed');
    };
    this.node.appendChild(header);
    this.body = el('div', 'jp-Datastore-body');
    this.rows = el('div', 'jp-Datastore-rows');
    this.body.appendChild(this.rows);
    this.node.appendChild(this.body);
    parent.appendChild(this.node);
  }

  /** All the entries anew (at a (re)connection): rows kept where their key stays. */
  reset(entries: { [key: string]: unknown }, order?: (a: Entry, b: Entry) => number): void {
    const keys = Object.keys(entries);
    if (order) {
      keys.sort((a, b) => order(entries[a] as Entry, entries[b] as Entry));
    }
    for (const key of [...this.entries.keys()]) {
      if (!(key in entries)) {
        this.set(key, null);
      }
    }
    for (const key of keys) {
      const row = this._place(key);
      this.entries.set(key, entries[key] as Entry);
      this._update(row, key, entries[key] as Entry);
      this.rows.appendChild(row); // in order
    }
    setText(this._count, String(this.entries.size));
  }

  set(key: string, entry: Entry | null): void {
    if (entry === null) {
      const row = this._rowOf.get(key);
      row?.remove();
      this._rowOf.delete(key);
      this.entries.delete(key);
    } else {
      const isNew = !this._rowOf.has(key);
      const row = this._place(key);
      this.entries.set(key, entry);
      this._update(row, key, entry);
      if (isNew) {
        if (this._newestFirst) {
          this.rows.prepend(row);
        } else {
          this.rows.appendChild(row);
        }
      }
    }
    setText(this._count, String(this.entries.size));
  }

  row(key: string): HTMLElement | undefined {
    return this._rowOf.get(key);
  }

  private _place(key: string): HTMLElement {
    let row = this._rowOf.get(key);
    if (row === undefined) {
      row = this._row(key);
      this._rowOf.set(key, row);
    }
    return row;
  }

  readonly node: HTMLElement;
  readonly body: HTMLElement;
  readonly rows: HTMLElement;
  readonly entries = new Map<string, Entry>();
  private _count: HTMLElement;
  private _rowOf = new Map<string, HTMLElement>();
}

/** The children of a row, by class suffix. */
function part(row: HTMLElement, name: string): HTMLElement {
  return row.querySelector(`.jp-Datastore-${name}`) as HTMLElement;
}

export class DatastorePanel extends Widget implements IStateListener {
  constructor(app: JupyterFrontEnd) {
    super();
    this._app = app;
    this._settings = app.serviceManager.serverSettings;
    this._roles = new Roles(this._settings);
    this.id = 'jupyter-datastore-panel';
    this.addClass('jp-Datastore-panel');
    this.title.icon = datastoreIcon;
    this.title.caption = 'Datastore';
    this.title.label = '';

    const root = this.node;
    const header = el('div', 'jp-Datastore-header');
    header.appendChild(el('h2', 'jp-Datastore-title', 'Datastore'));
    this._feedStatus = el('span', 'jp-Datastore-feed', 'not connected');
    this._feedStatus.dataset.feed = 'offline';
    header.appendChild(this._feedStatus);
    root.appendChild(header);
    this._message = el('div', 'jp-Datastore-message');
    this._message.hidden = true;
    root.appendChild(this._message);
    this._note = el(
      'div',
      'jp-Datastore-note',
      'You have no role on this server: only what is shared with you shows here.'
    );
    this._note.hidden = true;
    root.appendChild(this._note);

    this._sections = {
      kernels: new Section(
        root,
        'kernels',
        'Kernels',
        key => this._kernelRow(key),
        (row, key, entry) => this._updateKernel(row, key, entry)
      ),
      sessions: new Section(
        root,
        'sessions',
        'Sessions',
        key => {
          const row = el('div', 'jp-Datastore-row jp-Datastore-session');
          row.dataset.sessionId = key;
          row.append(el('span', 'jp-Datastore-path'), el('span', 'jp-Datastore-kernelRef'));
          return row;
        },
        (row, _key, entry) => {
          const kernel = (entry.kernel ?? {}) as Entry;
          setText(part(row, 'path'), text(entry.path) || text(entry.name));
          const ref = kernel.id ? `${text(kernel.name)} ${short(text(kernel.id))}` : '';
          setText(part(row, 'kernelRef'), ref);
          row.dataset.kernelId = text(kernel.id);
        }
      ),
      terminals: new Section(
        root,
        'terminals',
        'Terminals',
        key => {
          const row = el('div', 'jp-Datastore-row jp-Datastore-terminal');
          row.dataset.terminalName = key;
          row.append(el('span', 'jp-Datastore-name'));
          return row;
        },
        (row, key, entry) => setText(part(row, 'name'), text(entry.name) || key)
      ),
      executions: new Section(
        root,
        'executions',
        'Executions',
        key => this._executionRow(key),
        (row, key, entry) => this._updateExecution(row, key, entry),
        true
      ),
      documents: new Section(
        root,
        'documents',
        'Open documents',
        key => {
          const row = el('div', 'jp-Datastore-row jp-Datastore-document');
          row.dataset.documentId = key;
          row.append(
            el('span', 'jp-Datastore-path'),
            el('span', 'jp-Datastore-peers'),
            el('span', 'jp-Datastore-users')
          );
          return row;
        },
        (row, _key, entry) => {
          row.dataset.path = text(entry.path);
          setText(part(row, 'path'), text(entry.path));
          const peers = Number(entry.peers ?? 0);
          setText(part(row, 'peers'), `${peers} ${peers === 1 ? 'peer' : 'peers'}`);
          part(row, 'peers').title = 'connections to the document';
          const users = Array.isArray(entry.users) ? entry.users.map(text) : [];
          setText(part(row, 'users'), users.join(', '));
          row.dataset.users = users.join(',');
        }
      )
    };

    // The tail of events, with its filter.
    // (its rows are kept here, newest first, not by key)
    this._events = new Section(
      root,
      'events',
      'Events',
      () => el('div', ''),
      () => undefined
    );
    this._filter = el('input', 'jp-Datastore-filter jp-mod-styled');
    this._filter.type = 'search';
    this._filter.placeholder = 'Filter events (schema or text)';
    this._filter.oninput = () => this._applyFilter();
    this._events.body.prepend(this._filter);

    this._state = new StateFeed(this._settings, this, MAPS);
    this._eventFeed = new EventFeed(
      this._settings,
      event => this._onEvent(event),
      () => undefined,
      TAIL
    );
  }

  /** Follow the server (once; the feeds go on while the panel is hidden). */
  start(): void {
    if (this._started) {
      return;
    }
    this._started = true;
    this._eventFeed.start();
    this._state.start();
  }

  dispose(): void {
    this._state.dispose();
    this._eventFeed.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.start();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.start();
    }
  }

  // --- IStateListener ---

  reset(state: State): void {
    this._roles.clear();
    void this._roles.role('').then(role => {
      this._note.hidden = role !== 'none';
    });
    for (const name of MAPS) {
      const order =
        name === 'executions'
          ? (a: Entry, b: Entry) => text(b.created_at).localeCompare(text(a.created_at))
          : undefined;
      this._sections[name].reset(state[name] ?? {}, order);
    }
    this._refreshKernelActions();
  }

  change(changes: Change[]): void {
    let sessions = false;
    for (const [map, key, value] of changes) {
      const section = this._sections[map as MapName];
      if (section !== undefined) {
        section.set(key, value as Entry | null);
        sessions = sessions || map === 'sessions';
        if (value === null) {
          this._kernelTicket.delete(key);
          this._executionTicket.delete(key);
        }
      }
    }
    if (sessions) {
      this._refreshKernelActions();
    }
  }

  status(status: FeedStatus, detail?: string): void {
    this._feedStatus.dataset.feed = status;
    const label: { [key in FeedStatus]: string } = {
      connecting: 'connecting…',
      live: 'live',
      events: 'live (events)',
      refused: 'no access',
      offline: 'reconnecting…'
    };
    setText(this._feedStatus, label[status]);
    this._message.hidden = status !== 'refused';
    if (status === 'refused') {
      setText(this._message, detail || 'You have no access to the server state.');
    }
  }

  // --- kernels ---

  private _kernelRow(key: string): HTMLElement {
    const row = el('div', 'jp-Datastore-row jp-Datastore-kernel');
    row.dataset.kernelId = key;
    row.append(
      el('span', 'jp-Datastore-id', short(key)),
      el('span', 'jp-Datastore-name'),
      el('span', 'jp-Datastore-state'),
      el('span', 'jp-Datastore-actions')
    );
    return row;
  }

  private _updateKernel(row: HTMLElement, key: string, entry: Entry): void {
    const state = text(entry.execution_state);
    setText(part(row, 'name'), text(entry.name));
    setText(part(row, 'state'), state);
    const reason = text(entry.reason);
    row.title = reason ? `${key}: ${reason}` : key;
    if (row.dataset.state !== state) {
      row.dataset.state = state;
      this._kernelActions(key);
    }
  }

  private _refreshKernelActions(): void {
    for (const key of this._sections.kernels.entries.keys()) {
      this._kernelActions(key);
    }
  }

  /** The kernel's actions, where the role on each of its notebooks (or the root, for a
   * kernel on none) is runner at least. */
  private _kernelActions(kernelId: string): void {
    const paths: string[] = [];
    for (const session of this._sections.sessions.entries.values()) {
      const kernel = (session.kernel ?? {}) as Entry;
      if (kernel.id === kernelId && typeof session.path === 'string') {
        paths.push(session.path);
      }
    }
    const ticket = (this._kernelTicket.get(kernelId) ?? 0) + 1;
    this._kernelTicket.set(kernelId, ticket);
    void this._roles.atLeast(paths.length > 0 ? paths : [''], 'runner').then(allowed => {
      const row = this._sections.kernels.row(kernelId);
      if (!row || this._kernelTicket.get(kernelId) !== ticket) {
        return;
      }
      const actions = part(row, 'actions');
      const dead = row.dataset.state === 'dead';
      const wanted = allowed && !dead ? 'interrupt,restart,shutdown' : '';
      if (actions.dataset.shown === wanted) {
        return;
      }
      actions.dataset.shown = wanted;
      actions.replaceChildren();
      if (!wanted) {
        return;
      }
      const base = URLExt.join(this._settings.baseUrl, KERNELS, kernelId);
      actions.append(
        this._button('interrupt', 'Interrupt', 'Interrupt the kernel', () =>
          this._act('Interrupt', `${base}/interrupt`, 'POST')
        ),
        this._button('restart', 'Restart', 'Restart the kernel', () =>
          this._act('Restart', `${base}/restart`, 'POST')
        ),
        this._button('shutdown', 'Shut down', 'Shut the kernel down', () =>
          this._act('Shut down', base, 'DELETE')
        )
      );
    });
  }

  // --- executions ---

  private _executionRow(key: string): HTMLElement {
    const row = el('div', 'jp-Datastore-row jp-Datastore-execution');
    row.dataset.executionId = key;
    row.tabIndex = 0;
    row.append(
      el('span', 'jp-Datastore-badge'),
      el('span', 'jp-Datastore-where'),
      el('span', 'jp-Datastore-duration'),
      el('span', 'jp-Datastore-actions')
    );
    const open = (event: Event): void => {
      const target = event.target as HTMLElement;
      if (target.closest('button, input')) {
        return;
      }
      const entry = this._sections.executions.entries.get(key);
      if (entry) {
        void this._openCell(text(entry.path), text(entry.cell_id));
      }
    };
    row.onclick = open;
    row.onkeydown = event => {
      if (event.key === 'Enter') {
        open(event);
      }
    };
    return row;
  }

  private _updateExecution(row: HTMLElement, key: string, entry: Entry): void {
    const status = text(entry.status);
    row.dataset.status = status;
    row.dataset.path = text(entry.path);
    row.dataset.cellId = text(entry.cell_id);
    setText(part(row, 'badge'), status.replace('_', ' '));
    const where = `${text(entry.path)}${entry.cell_id ? ` · ${text(entry.cell_id)}` : ''}`;
    setText(part(row, 'where'), where);
    const by = text(entry.user) ? `by ${text(entry.user)}, ` : '';
    row.title = `${where}\n${by}${text(entry.created_at)}`;
    setText(part(row, 'duration'), duration(entry.started_at, entry.finished_at));
    const prompt = entry.input_request as Entry | null | undefined;
    // The actions as a string, to rebuild them only when they change.
    let wanted = '';
    if (status === 'queued') {
      wanted = 'cancel';
    } else if (status === 'awaiting_input' && prompt) {
      wanted = `interrupt,input:${text(prompt.prompt)}${prompt.password ? ':password' : ''}`;
    } else if (ACTIVE.has(status)) {
      wanted = 'interrupt';
    }
    const ticket = (this._executionTicket.get(key) ?? 0) + 1;
    this._executionTicket.set(key, ticket);
    const actions = part(row, 'actions');
    if (!wanted) {
      actions.dataset.shown = '';
      actions.replaceChildren();
      return;
    }
    void this._roles.atLeast([text(entry.path)], 'runner').then(allowed => {
      if (this._executionTicket.get(key) !== ticket) {
        return;
      }
      const shown = allowed ? wanted : '';
      if (actions.dataset.shown === shown) {
        return;
      }
      actions.dataset.shown = shown;
      actions.replaceChildren();
      if (!shown) {
        return;
      }
      const url = URLExt.join(this._settings.baseUrl, EXECUTIONS, key);
      if (status === 'queued') {
        actions.append(
          this._button('cancel', 'Cancel', 'Cancel this queued cell', () =>
            this._act('Cancel', url, 'DELETE')
          )
        );
        return;
      }
      actions.append(
        this._button('interrupt', 'Interrupt', 'Interrupt this running cell', () =>
          this._act('Interrupt', url, 'DELETE')
        )
      );
      if (status === 'awaiting_input' && prompt) {
        actions.append(this._inputBox(url, prompt));
      }
    });
  }

  private _inputBox(url: string, prompt: Entry | null): HTMLElement {
    const box = el('span', 'jp-Datastore-answer');
    if (prompt && prompt.prompt) {
      box.appendChild(el('span', 'jp-Datastore-prompt', text(prompt.prompt)));
    }
    const input = el('input', 'jp-Datastore-input jp-mod-styled');
    input.type = prompt?.password ? 'password' : 'text';
    input.placeholder = 'answer, then Enter';
    input.onkeydown = event => {
      if (event.key !== 'Enter') {
        return;
      }
      event.preventDefault();
      const value = input.value;
      input.disabled = true;
      void this._act('Answer', `${url}/input`, 'POST', { value }).then(ok => {
        input.disabled = false;
        if (ok) {
          input.value = '';
          box.hidden = true;
        }
      });
    };
    box.appendChild(input);
    return box;
  }

  private async _openCell(path: string, cellId: string): Promise<void> {
    if (!path) {
      return;
    }
    await openAt(this._app, path, cellId || null);
  }

  // --- actions ---

  private _button(
    action: string,
    label: string,
    caption: string,
    run: () => Promise<unknown>
  ): HTMLButtonElement {
    const button = el('button', 'jp-Datastore-action jp-mod-styled', label);
    button.type = 'button';
    button.dataset.action = action;
    button.title = caption;
    button.onclick = event => {
      event.stopPropagation();
      void run();
    };
    return button;
  }

  /** A REST action; false (and the server's message as a notification) when refused. */
  private async _act(
    label: string,
    url: string,
    method: string,
    body?: unknown
  ): Promise<boolean> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
    }
    try {
      const response = await ServerConnection.makeRequest(url, init, this._settings);
      if (!response.ok) {
        Notification.error(`${label}: ${await refusal(response)}`, { autoClose: 10000 });
        return false;
      }
      return true;
    } catch (reason) {
      Notification.error(`${label}: ${String(reason)}`, { autoClose: 10000 });
      return false;
    }
  }

  // --- events ---

  private _onEvent(event: ServerEvent): void {
    this._state.eventCame();
    const schema = text(event.schema_id);
    const name = schema.replace(/\/v\d+$/, '').split('/').pop() || schema;
    const row = el('div', 'jp-Datastore-row jp-Datastore-event');
    row.dataset.eventId = text(event.__id__);
    row.dataset.schema = schema;
    const time = text(event.__timestamp__);
    const fields = Object.entries(event)
      .filter(([key]) => !key.startsWith('__') && key !== 'schema_id')
      .map(([key, value]) => {
        const shown = typeof value === 'object' ? JSON.stringify(value) : value;
        return `${key}=${text(shown)}`;
      })
      .join(' ');
    const clock = time ? new Date(time).toLocaleTimeString([], { hour12: false }) : '';
    const summary = fields.length > 300 ? fields.slice(0, 300) + '…' : fields;
    row.append(
      el('span', 'jp-Datastore-time', clock),
      el('span', 'jp-Datastore-schema', name),
      el('span', 'jp-Datastore-summary', summary)
    );
    row.title = schema;
    const haystack = `${schema} ${fields}`.toLowerCase();
    this._haystack.set(row, haystack);
    row.hidden = !this._matches(haystack);
    const rows = this._events.rows;
    rows.prepend(row);
    while (rows.childElementCount > TAIL) {
      rows.lastElementChild?.remove();
    }
    this._updateEventCount();
  }

  /** The permission rules changed (the state feed says so): roles are read again. */
  rulesChanged(): void {
    this._roles.clear();
    this._refreshKernelActions();
    for (const [key, entry] of this._sections.executions.entries) {
      const row = this._sections.executions.row(key);
      if (row) {
        this._updateExecution(row, key, entry);
      }
    }
  }

  private _matches(haystack: string): boolean {
    const words = this._filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    return words.every(word => haystack.includes(word));
  }

  private _applyFilter(): void {
    for (const row of Array.from(this._events.rows.children) as HTMLElement[]) {
      row.hidden = !this._matches(this._haystack.get(row) ?? '');
    }
    this._updateEventCount();
  }

  private _updateEventCount(): void {
    const rows = Array.from(this._events.rows.children) as HTMLElement[];
    const shown = rows.filter(row => !row.hidden).length;
    const count = this._events.node.querySelector('.jp-Datastore-count') as HTMLElement;
    setText(count, shown === rows.length ? String(rows.length) : `${shown}/${rows.length}`);
  }

  private _app: JupyterFrontEnd;
  private _settings: ServerConnection.ISettings;
  private _roles: Roles;
  private _feedStatus: HTMLElement;
  private _message: HTMLElement;
  private _note: HTMLElement;
  private _sections: { [name in MapName]: Section };
  private _events: Section;
  private _filter: HTMLInputElement;
  private _haystack = new WeakMap<HTMLElement, string>();
  private _state: StateFeed;
  private _eventFeed: EventFeed;
  private _started = false;
  private _kernelTicket = new Map<string, number>();
  private _executionTicket = new Map<string, number>();
}

export const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Datastore panel: the server, live.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const panel = new DatastorePanel(app);
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, panel.id);
    app.commands.addCommand(COMMAND, {
      label: 'Open the Datastore Panel',
      caption: "The server's kernels, sessions, executions, documents and events, live",
      icon: datastoreIcon,
      execute: () => {
        app.shell.activateById(panel.id);
        panel.start();
      }
    });
    palette?.addItem({ command: COMMAND, category: 'Datastore' });
  }
};
