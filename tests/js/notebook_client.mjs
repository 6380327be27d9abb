// A real Node Yjs peer of a jupyter-datastore notebook room, used by tests/test_node_client.py.
//
// It connects the way JupyterLab's front end does: @jupyter/ydoc's YNotebook for the schema,
// y-websocket 1.x's WebsocketProvider for the protocol (sessionId and token as query
// parameters), `ws` as the WebSocket of Node. Once synced it makes the edits a user would:
// it inserts a new code cell, then types, one keystroke per transaction, at the end of an
// existing cell's source. It then polls its document until some cell's source contains the
// text given by --wait-for (the other peer's edit), prints the notebook as JSON on stdout,
// disconnects cleanly and exits 0. Any failure (timeout, a refused connection, an error
// message from the server) is reported on stderr and the exit code is not 0.
//
//   node notebook_client.mjs --url http://127.0.0.1:8888 --token T --room json:notebook:ID \
//     --session-id S --insert-at 1 --new-cell-source 'x = 1' --type-into-id c1 \
//     --typed-text ' # hi' --wait-for 'from python' [--timeout 30]
//
// Exit codes: 0 done, 1 error, 2 timeout, 64 bad arguments.

import { parseArgs } from 'node:util';

import { YNotebook } from '@jupyter/ydoc';
import * as decoding from 'lib0/decoding';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';

const POLL_MS = 10;
const RAW_MESSAGE = 2; // jupyter-collaboration's JSON messages reuse y-websocket's "auth" type

class Failure extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        room: { type: 'string' },
        'session-id': { type: 'string' },
        'insert-at': { type: 'string' },
        'new-cell-source': { type: 'string' },
        'type-into-id': { type: 'string' },
        'typed-text': { type: 'string' },
        'wait-for': { type: 'string' },
        timeout: { type: 'string', default: '30' }
      }
    }));
  } catch (error) {
    throw new Failure(`bad arguments: ${error.message}`, 64);
  }
  const required = ['url', 'token', 'room', 'session-id', 'insert-at', 'new-cell-source',
    'type-into-id', 'typed-text', 'wait-for'];
  const missing = required.filter(name => values[name] === undefined);
  if (missing.length) {
    throw new Failure(`missing arguments: ${missing.map(name => `--${name}`).join(', ')}`, 64);
  }
  const insertAt = Number.parseInt(values['insert-at'], 10);
  const timeout = Number.parseFloat(values.timeout);
  if (!Number.isInteger(insertAt) || insertAt < 0 || !(timeout > 0)) {
    throw new Failure('--insert-at must be an integer >= 0 and --timeout a number > 0', 64);
  }
  return { ...values, insertAt, deadline: Date.now() + timeout * 1000, timeout };
}

function log(message) {
  process.stderr.write(`notebook_client: ${message}\n`);
}

/** Resolve once `predicate()` holds, checking every POLL_MS; reject at the deadline or on a
 * fatal connection error (`state.fatal`). */
function until(predicate, state, deadline, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (state.fatal) {
        reject(state.fatal);
      } else if (predicate()) {
        resolve();
      } else if (Date.now() > deadline) {
        reject(new Failure(`timed out waiting for ${what}`, 2));
      } else {
        setTimeout(check, POLL_MS);
      }
    };
    check();
  });
}

/** Give the event loop a turn: lets the socket send one keystroke's update at a time. */
function yieldToLoop() {
  return new Promise(resolve => setImmediate(resolve));
}

function connect(args, notebook, state) {
  const base = args.url.replace(/^http/, 'ws') + '/api/collaboration/room';
  // Presence, as JupyterLab publishes it; sent as soon as the socket opens.
  notebook.awareness.setLocalStateField('user', { name: 'Node peer' });
  const provider = new WebsocketProvider(base, args.room, notebook.ydoc, {
    params: { sessionId: args['session-id'], token: args.token },
    awareness: notebook.awareness,
    disableBc: true,
    WebSocketPolyfill: WebSocket
  });
  // The server's JSON messages (save replies, refusals, conflicts) as JupyterLab reads them.
  provider.messageHandlers[RAW_MESSAGE] = (_encoder, decoder) => {
    const text = decoding.readVarString(decoder);
    log(`server message: ${text}`);
    const message = JSON.parse(text);
    if (message.type === 'refused' || message.type === 'conflict') {
      state.fatal = new Failure(`the server did not take our change: ${text}`);
    }
  };
  provider.on('connection-close', event => {
    if (state.closing) {
      return;
    }
    // 1000/1001 and network drops are retried by y-websocket; the server's refusals are final.
    const code = event?.code;
    if (code === 1003 || (code >= 4000 && code < 5000)) {
      state.fatal = new Failure(`the server closed the connection: ${code} ${event.reason}`);
    } else {
      log(`connection closed (${code} ${event?.reason ?? ''}), y-websocket will reconnect`);
    }
  });
  provider.on('connection-error', event => {
    const message = String(event?.message ?? event?.error ?? 'unknown');
    // A refused handshake (401, 403, 404...) will not get better by reconnecting.
    if (!state.closing && /Unexpected server response: 4\d\d/.test(message)) {
      state.fatal = new Failure(`the server refused the WebSocket handshake: ${message}`);
    } else {
      log(`connection error: ${message}`);
    }
  });
  return provider;
}

function cellById(notebook, id) {
  return notebook.cells.find(cell => cell.getId() === id);
}

async function edit(args, notebook) {
  // A new code cell, as "insert cell below" plus a paste would make it. (@jupyter/ydoc reads
  // the new cell's Y types before they join the document; Yjs warns "Invalid access" on
  // stderr for that, which is harmless.)
  const index = Math.min(args.insertAt, notebook.cells.length);
  notebook.insertCell(index, { cell_type: 'code', source: args['new-cell-source'] });
  await yieldToLoop();
  // Typing: each keystroke is one transaction at the cursor, which follows the text typed.
  const cell = cellById(notebook, args['type-into-id']);
  if (cell === undefined) {
    throw new Failure(`no cell with id ${args['type-into-id']} in the synced notebook`);
  }
  for (const character of args['typed-text']) {
    const end = cell.ysource.length;
    cell.updateSource(end, end, character);
    await yieldToLoop();
  }
}

/** Close the socket after everything queued on it, and wait until it is closed. */
async function disconnect(provider, state, deadline) {
  state.closing = true;
  const ws = provider.ws;
  provider.destroy();
  if (ws !== null && ws.readyState !== WebSocket.CLOSED) {
    await new Promise(resolve => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

async function main() {
  const args = options();
  const notebook = new YNotebook();
  const state = { fatal: null, closing: false };
  const provider = connect(args, notebook, state);
  try {
    await until(() => provider.synced, state, args.deadline, 'the first sync with the server');
    if (notebook.cells.length === 0) {
      throw new Failure('the synced notebook has no cells: expected the file written by the test');
    }
    await edit(args, notebook);
    const waitFor = args['wait-for'];
    await until(
      () => notebook.cells.some(cell => cell.getSource().includes(waitFor)),
      state,
      args.deadline,
      `a cell whose source contains ${JSON.stringify(waitFor)}`
    );
    const content = notebook.toJSON();
    await disconnect(provider, state, Date.now() + 5000);
    return content;
  } catch (error) {
    const cells = notebook.cells.map(cell => cell.getSource());
    log(`cell sources at failure: ${JSON.stringify(cells)}`);
    throw error;
  } finally {
    state.closing = true;
    provider.destroy();
    notebook.dispose();
  }
}

try {
  const content = await main();
  await new Promise(resolve => process.stdout.write(JSON.stringify(content) + '\n', resolve));
  process.exit(0);
} catch (error) {
  const code = error instanceof Failure ? error.code : 1;
  log(`FAILED: ${error instanceof Failure ? error.message : error?.stack ?? error}`);
  process.exit(code);
}
