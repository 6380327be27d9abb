/**
 * jupyter-datastore in JupyterLab 4 and Notebook 7: the user's server notifications as
 * JupyterLab notifications (a toast, and the notification center), live.
 *
 * At start the unread ones are listed (GET /api/notifications?unread=true), then the feed
 * (WS /api/events/subscribe/notification?since=) sends the new ones, and, for each of the
 * user's rows that one of their windows marks read or deletes, a change. A dropped socket
 * reconnects with back-off and resumes after the newest row it got, so none is shown twice.
 * Dismissing a notification (or clicking one of its actions) marks it read on the server,
 * which tells the user's other windows: they dismiss it too.
 *
 * The other plugins: prompts.ts shows the input() prompts of cells run by the server,
 * readonly.ts opens what the user may only view read-only, panel.ts is the Datastore panel,
 * trust.ts re-renders a cell's outputs when the server gives or takes back its trust,
 * widgets.ts renders a widget a server run shows as soon as its model is made.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { openAt } from './cells';
import { panelPlugin } from './panel';
import { promptsPlugin } from './prompts';
import { readOnlyPlugin } from './readonly';
import { trustPlugin } from './trust';
import { widgetsPlugin } from './widgets';

const PLUGIN_ID = 'jupyter-datastore:notifications';
const REST = 'api/notifications';
const FEED = 'api/events/subscribe/notification';
/** Rows listed at start: the newest unread ones. */
const LIST_LIMIT = 100;
/** Reconnect delays: doubled from the first to the last after each failed attempt. */
const FIRST_RETRY = 1000;
const LAST_RETRY = 30000;
/** How long a toast of an info or success notification stays (it stays in the center). */
const SHORT_TOAST = 10000;
/** Resume from the beginning when the user has no row yet (nothing is older). */
const EPOCH = '1970-01-01T00:00:00.000000Z';

/** One of the user's notifications, as the server stores it. */
interface IRow {
  id: string;
  created_at: string;
  read: boolean;
  message: string;
  type: string;
  link: string | null;
  data: { [key: string]: unknown } | null;
  sender: { username: string } | null;
}

/** A frame of the feed: data frames (`type`) and control frames (`__control__`). */
interface IFrame {
  type?: string;
  notification?: IRow;
  id?: string;
  __control__?: string;
  detail?: string;
}

/** The server has no notifications for this user: nothing to retry. */
class Absent extends Error {}

/** Where a notification's link leads: a file to open, or another page of the server. */
type Target = { path: string } | { url: string };

/** Our types are JupyterLab's own, but for the unknown ones. */
function labType(type: string): Notification.TypeOptions {
  switch (type) {
    case 'info':
    case 'success':
    case 'warning':
    case 'error':
      return type;
    default:
      return 'default';
  }
}

/** Paths of the pages that show one file, in JupyterLab and Notebook 7. */
const FILE_PAGE =
  /^(?:(?:lab|doc)(?:\/workspaces\/[^/]+)?\/tree|tree|notebooks|edit)\/(.+)$/;

/** A row's `link` (a path in the root, or a URL path on this server) as a target. */
function linkTarget(link: string | null, baseUrl: string): Target | null {
  if (!link) {
    return null;
  }
  const bare = link.split(/[?#]/, 1)[0];
  if (!link.startsWith('/')) {
    return bare ? { path: decodeURIComponent(bare) } : null;
  }
  const base = new URL(baseUrl, window.location.origin).pathname;
  if (bare.startsWith(base)) {
    const page = FILE_PAGE.exec(bare.slice(base.length));
    if (page) {
      return { path: decodeURIComponent(page[1]) };
    }
  }
  return { url: link };
}

/** Follows the user's notifications on the server and shows them. */
class ServerNotifications {
  constructor(app: JupyterFrontEnd) {
    this._app = app;
    this._settings = app.serviceManager.serverSettings;
    Notification.manager.changed.connect(this._onChanged, this);
  }

  /** List the unread ones, show them, then follow the feed. */
  async start(): Promise<void> {
    this._relist = true;
    await this._reconnect();
  }

  /** Show the unread rows (oldest first) and take the newest row's time to resume from.
   * `absent` when this server has no notifications for the user (a server without
   * jupyter-datastore, or no user name): nothing to follow. */
  private async _list(): Promise<'listed' | 'absent' | 'failed'> {
    let unread: IRow[];
    let newest: IRow[];
    try {
      [unread, newest] = await Promise.all([
        this._get(`?unread=true&limit=${LIST_LIMIT}`),
        this._get('?limit=1')
      ]);
    } catch (reason) {
      if (reason instanceof Absent) {
        console.info(`jupyter-datastore: no notifications here (${reason.message})`);
        return 'absent';
      }
      console.warn('jupyter-datastore: notifications not listed', reason);
      return 'failed';
    }
    this._since = newest.length > 0 ? newest[0].created_at : EPOCH;
    for (const row of unread.reverse()) {
      this._take(row);
    }
    return 'listed';
  }

  private async _get(query: string): Promise<IRow[]> {
    const url = URLExt.join(this._settings.baseUrl, REST) + query;
    const response = await ServerConnection.makeRequest(url, {}, this._settings);
    if (response.status === 403 || response.status === 404) {
      throw new Absent(`${response.status} from ${REST}`);
    }
    if (!response.ok) {
      throw new Error(`${response.status} from ${REST}`);
    }
    return ((await response.json()) as { notifications: IRow[] }).notifications;
  }

  private _connect(): void {
    const url = new URL(URLExt.join(this._settings.wsUrl, FEED));
    url.searchParams.set('since', this._since);
    if (this._settings.appendToken && this._settings.token) {
      url.searchParams.set('token', this._settings.token);
    }
    const socket = new this._settings.WebSocket(url.toString());
    socket.onmessage = event => {
      this._onFrame(JSON.parse(event.data as string) as IFrame);
    };
    socket.onclose = event => {
      // Too far behind: the feed will not resume; list with GET again.
      this._relist = this._relist || event.code === 1013;
      this._reconnectLater();
    };
  }

  private _reconnectLater(): void {
    const delay = Math.min(FIRST_RETRY * 2 ** this._failures, LAST_RETRY);
    this._failures += 1;
    window.setTimeout(() => {
      void this._reconnect();
    }, delay);
  }

  private async _reconnect(): Promise<void> {
    if (this._relist) {
      const listed = await this._list();
      if (listed === 'absent') {
        return;
      }
      if (listed === 'failed') {
        this._reconnectLater();
        return;
      }
      this._relist = false;
    }
    this._connect();
  }

  private _onFrame(frame: IFrame): void {
    if (frame.__control__ === 'resumed') {
      this._failures = 0; // the server answered in full: back-off starts over
    } else if (frame.__control__ === 'error') {
      console.warn('jupyter-datastore: notification feed:', frame.detail);
    } else if (frame.type === 'notification' && frame.notification) {
      this._take(frame.notification);
    } else if (frame.type === 'notification_updated' && frame.notification) {
      const row = frame.notification;
      if (row.read) {
        this._dismiss(row.id);
      } else if (!this._shown.has(row.id)) {
        this._show(row); // marked unread again in another window
      }
    } else if (frame.type === 'notification_deleted' && frame.id) {
      this._dismiss(frame.id);
    }
  }

  /** A row from the list or the feed: shown once, if unread. */
  private _take(row: IRow): void {
    if (row.created_at > this._since) {
      this._since = row.created_at;
    }
    if (this._seen.has(row.id)) {
      return;
    }
    this._seen.add(row.id);
    if (!row.read) {
      this._show(row);
    }
  }

  private _show(row: IRow): void {
    const actions: Notification.IAction[] = [];
    const target = linkTarget(row.link, this._settings.baseUrl);
    if (target !== null) {
      const cell = row.data?.cell_id;
      actions.push({
        label: 'Open',
        caption: 'path' in target ? `Open ${target.path}` : `Open ${target.url}`,
        displayType: 'accent',
        callback: () => {
          void this._open(target, typeof cell === 'string' ? cell : null);
        }
      });
    }
    // An action's default closes the toast and dismisses the notification: read.
    actions.push({ label: 'Mark read', caption: 'Mark as read', callback: () => undefined });
    const type = labType(row.type);
    const stays = type === 'error' || type === 'warning';
    const labId = Notification.emit(row.message, type, {
      autoClose: stays ? false : SHORT_TOAST,
      actions,
      data: { datastore: row.id }
    });
    this._shown.set(row.id, labId);
    this._rowOf.set(labId, row.id);
  }

  /** The server says it is read or gone: no longer shown here (and not marked again). */
  private _dismiss(id: string): void {
    this._seen.add(id);
    const labId = this._shown.get(id);
    if (labId !== undefined) {
      this._forget(id, labId);
      Notification.dismiss(labId);
    }
  }

  private _forget(id: string, labId: string): void {
    this._shown.delete(id);
    this._rowOf.delete(labId);
  }

  /** One of ours left the notification center here: the user dismissed it, or used one
   * of its actions. */
  private _onChanged(_: unknown, change: Notification.IChange): void {
    if (change.type !== 'removed') {
      return;
    }
    const id = this._rowOf.get(change.notification.id);
    if (id !== undefined) {
      this._forget(id, change.notification.id);
      void this._markRead(id);
    }
  }

  private async _markRead(id: string): Promise<void> {
    const url = URLExt.join(this._settings.baseUrl, REST, encodeURIComponent(id));
    const init = { method: 'PATCH', body: JSON.stringify({ read: true }) };
    try {
      const response = await ServerConnection.makeRequest(url, init, this._settings);
      if (!response.ok && response.status !== 404) {
        console.warn(`jupyter-datastore: notification ${id} not marked read (${response.status})`);
      }
    } catch (reason) {
      console.warn(`jupyter-datastore: notification ${id} not marked read`, reason);
    }
  }

  private async _open(target: Target, cell: string | null): Promise<void> {
    if ('url' in target) {
      window.open(target.url, '_blank', 'noopener');
      return;
    }
    await openAt(this._app, target.path, cell);
  }

  private _app: JupyterFrontEnd;
  private _settings: ServerConnection.ISettings;
  private _since = EPOCH;
  private _failures = 0;
  private _relist = false;
  /** Rows handled here (shown, or known as read or gone): never shown again as new. */
  private _seen = new Set<string>();
  /** Row id -> JupyterLab notification id, and back, while it is shown. */
  private _shown = new Map<string, string>();
  private _rowOf = new Map<string, string>();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "The user's jupyter-datastore notifications as JupyterLab notifications, live.",
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    const notifications = new ServerNotifications(app);
    // After the notification center is in place, so that the first ones toast too.
    void app.restored.then(() => notifications.start());
  }
};

export default [
  plugin,
  promptsPlugin,
  readOnlyPlugin,
  panelPlugin,
  trustPlugin,
  widgetsPlugin
];
