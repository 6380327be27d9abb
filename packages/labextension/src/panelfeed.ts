/**
 * The Datastore panel's two live sources: the server's state and the tail of events.
 *
 * StateFeed follows `WS /api/datastore/state/subscribe`: a first frame
 * `{"type": "state", "state"}` (this user's view, as `GET /api/datastore/state` gives it),
 * then `{"type": "changes", "changes": [[map, key, value or null], ...]}`; of the control
 * frames `{"__control__"}`, `rules_changed` has the roles read again, the others are only
 * logged. Closed with 4403 (access withdrawn) it says so and tries again later; 1013 (too
 * far behind) reconnects at once and takes the new first frame; any other close reconnects
 * with back-off (1 s, doubling up to 30 s, reset by a first frame).
 * A server without that socket (the handshake fails) is followed through its events instead:
 * `GET /api/datastore/state` once, then again after each event that comes (never on a timer),
 * the differences handed on as changes.
 *
 * EventFeed follows `WS /api/events/subscribe`: first the last events (a tail), then the
 * live ones; a dropped socket reconnects with back-off, resuming after the last id it got.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

const STATE = 'api/datastore/state';
const STATE_FEED = 'api/datastore/state/subscribe';
const EVENT_FEED = 'api/events/subscribe';
const FIRST_RETRY = 1000;
const LAST_RETRY = 30000;

/** A JSON object. */
export type Entry = { [key: string]: unknown };
/** The state: map name -> key -> entry. */
export type State = { [map: string]: { [key: string]: unknown } };
/** One change: map, key, the new entry (null: gone). */
export type Change = [string, string, unknown];

/** How the panel is being kept live. */
export type FeedStatus = 'connecting' | 'live' | 'events' | 'refused' | 'offline';

export interface IStateListener {
  /** The whole state, at a (re)connection. */
  reset(state: State): void;
  /** Changes since the last reset or change. */
  change(changes: Change[]): void;
  status(status: FeedStatus, detail?: string): void;
  /** The permission rules changed: the user's roles may differ. */
  rulesChanged(): void;
}

function socketUrl(settings: ServerConnection.ISettings, path: string): URL {
  const url = new URL(URLExt.join(settings.wsUrl, path));
  if (settings.appendToken && settings.token) {
    url.searchParams.set('token', settings.token);
  }
  return url;
}

/** The changes that make `before` into `after`, for the maps named in `maps`. */
export function differences(before: State, after: State, maps: readonly string[]): Change[] {
  const changes: Change[] = [];
  for (const map of maps) {
    const old = before[map] ?? {};
    const now = after[map] ?? {};
    for (const key of Object.keys(old)) {
      if (!(key in now)) {
        changes.push([map, key, null]);
      }
    }
    for (const [key, value] of Object.entries(now)) {
      if (!(key in old) || JSON.stringify(old[key]) !== JSON.stringify(value)) {
        changes.push([map, key, value]);
      }
    }
  }
  return changes;
}

/** A socket followed with reconnects: back-off from FIRST_RETRY, doubling up to LAST_RETRY. */
abstract class Feed {
  constructor(settings: ServerConnection.ISettings) {
    this._settings = settings;
  }

  start(): void {
    this._connect();
  }

  dispose(): void {
    this._disposed = true;
    window.clearTimeout(this._timer);
    this._socket?.close();
  }

  protected abstract _connect(): void;

  /** Connect again after `delay`, or after the next back-off step. */
  protected _later(delay?: number): void {
    const wait = delay ?? Math.min(FIRST_RETRY * 2 ** this._failures, LAST_RETRY);
    this._failures += 1;
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => this._connect(), wait);
  }

  protected _settings: ServerConnection.ISettings;
  protected _socket: WebSocket | null = null;
  protected _failures = 0;
  protected _disposed = false;
  private _timer = 0;
}

export class StateFeed extends Feed {
  constructor(
    settings: ServerConnection.ISettings,
    listener: IStateListener,
    maps: readonly string[]
  ) {
    super(settings);
    this._listener = listener;
    this._maps = maps;
  }

  /** Whether the state is followed through events (the state socket is missing). */
  get byEvents(): boolean {
    return this._byEvents;
  }

  /** An event came: in the events mode, read the state again (one read at a time). */
  eventCame(): void {
    if (!this._byEvents || this._disposed) {
      return;
    }
    if (this._reading) {
      this._again = true;
      return;
    }
    void this._read();
  }

  protected _connect(): void {
    if (this._disposed) {
      return;
    }
    this._listener.status(this._byEvents ? 'events' : 'connecting');
    let opened = false;
    const socket = new this._settings.WebSocket(
      socketUrl(this._settings, STATE_FEED).toString()
    );
    this._socket = socket;
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = event => {
      this._onFrame(JSON.parse(event.data as string));
    };
    socket.onclose = event => {
      if (this._socket !== socket || this._disposed) {
        return;
      }
      this._socket = null;
      if (!opened) {
        // No such socket here (or refused at the handshake): follow the state by events.
        void this._fallBack();
        return;
      }
      if (event.code === 4403) {
        this._listener.status('refused', 'Access to the server state was withdrawn.');
        this._later(LAST_RETRY);
      } else if (event.code === 1013) {
        this._connect(); // too far behind: start over with a new first frame
      } else {
        this._listener.status('offline');
        this._later();
      }
    };
  }

  private _onFrame(frame: {
    type?: string;
    state?: State;
    changes?: Change[];
    __control__?: string;
    detail?: string;
  }): void {
    if (frame.__control__ !== undefined) {
      if (frame.__control__ === 'error') {
        console.warn('jupyter-datastore: state feed:', frame.detail);
      } else if (frame.__control__ === 'rules_changed') {
        this._listener.rulesChanged();
      }
      return;
    }
    if (frame.type === 'state' && frame.state) {
      this._failures = 0;
      this._byEvents = false;
      this._state = frame.state;
      this._listener.reset(frame.state);
      this._listener.status('live');
    } else if (frame.type === 'changes' && frame.changes) {
      for (const [map, key, value] of frame.changes) {
        const entries = (this._state[map] = this._state[map] ?? {});
        if (value === null) {
          delete entries[key];
        } else {
          entries[key] = value;
        }
      }
      this._listener.change(frame.changes);
    }
  }

  private async _fallBack(): Promise<void> {
    const first = !this._byEvents;
    const ok = await this._read(first);
    if (ok && first) {
      this._byEvents = true;
      this._listener.status('events');
    }
    this._later();
  }

  /** GET the state; the first time a reset, then the differences. */
  private async _read(reset = false): Promise<boolean> {
    this._reading = true;
    try {
      do {
        this._again = false;
        const url = URLExt.join(this._settings.baseUrl, STATE);
        let response: Response;
        try {
          response = await ServerConnection.makeRequest(url, {}, this._settings);
        } catch (reason) {
          this._listener.status('offline');
          return false;
        }
        if (response.status === 403) {
          this._listener.status('refused', 'You may not see the server state.');
          return false;
        }
        if (!response.ok) {
          this._listener.status('offline', `${response.status} from ${STATE}`);
          return false;
        }
        const state = (await response.json()) as State;
        if (this._disposed || (!reset && !this._byEvents)) {
          return true; // the socket took over meanwhile
        }
        if (reset || !this._byEvents) {
          this._state = state;
          this._listener.reset(state);
          reset = false;
        } else {
          const changes = differences(this._state, state, this._maps);
          this._state = state;
          if (changes.length > 0) {
            this._listener.change(changes);
          }
        }
      } while (this._again);
      return true;
    } finally {
      this._reading = false;
    }
  }

  private _listener: IStateListener;
  private _maps: readonly string[];
  private _state: State = {};
  private _byEvents = false;
  private _reading = false;
  private _again = false;
}

/** One event as the event socket sends it. */
export type ServerEvent = Entry & { schema_id?: string; __id__?: number };

export class EventFeed extends Feed {
  constructor(
    settings: ServerConnection.ISettings,
    onEvent: (event: ServerEvent) => void,
    onStatus: (live: boolean) => void,
    tail: number
  ) {
    super(settings);
    this._onEvent = onEvent;
    this._onStatus = onStatus;
    this._tail = tail;
  }

  protected _connect(): void {
    if (this._disposed) {
      return;
    }
    const url = socketUrl(this._settings, EVENT_FEED);
    if (this._since !== null) {
      url.searchParams.set('since', String(this._since));
    }
    // The first time, the tail comes first: ask the newest id (a subscribe message is
    // answered with it), subscribe again from `tail` ids before it, and take the events
    // from that second subscription on (its replay, then the live ones).
    let phase: 'ask' | 'wait' | 'live' = this._since === null ? 'ask' : 'live';
    const socket = new this._settings.WebSocket(url.toString());
    this._socket = socket;
    socket.onopen = () => {
      this._failures = 0;
      this._onStatus(true);
      if (phase === 'ask') {
        socket.send(JSON.stringify({ type: 'subscribe' }));
      }
    };
    socket.onmessage = message => {
      const data = JSON.parse(message.data as string) as ServerEvent | ServerEvent[];
      for (const event of Array.isArray(data) ? data : [data]) {
        if (event.__control__ !== undefined) {
          if (event.__control__ === 'subscribed' && phase !== 'live') {
            const last = typeof event.last_id === 'number' ? event.last_id : 0;
            if (phase === 'ask' && last > 1) {
              phase = 'wait';
              const since = Math.max(1, last - this._tail);
              socket.send(JSON.stringify({ type: 'subscribe', since }));
            } else {
              phase = 'live';
            }
          }
          continue;
        }
        if (phase !== 'live') {
          continue; // the second subscription sends these again
        }
        if (typeof event.__id__ === 'number') {
          this._since = event.__id__;
        }
        this._onEvent(event);
      }
    };
    socket.onclose = () => {
      if (this._socket !== socket || this._disposed) {
        return;
      }
      this._socket = null;
      this._onStatus(false);
      this._later();
    };
  }

  private _onEvent: (event: ServerEvent) => void;
  private _onStatus: (live: boolean) => void;
  private _tail: number;
  private _since: number | null = null;
}
