// A real Node GraphQL client (graphql-ws over `ws`) of jupyter-datastore's
// /api/datastore/graphql, used by tests/graphql_api/test_node_client.py.
//
// It opens one graphql-transport-ws connection with the token as a header, runs the given
// operation (a query or a subscription), prints each result as one JSON line on stdout,
// and exits 0 once a result contains the text given by --wait-for (or, without it, when
// the operation completes). Errors (a refused connection, a GraphQL error) go to stderr
// with a non-zero exit code.
//
//   node graphql_client.mjs --url http://127.0.0.1:8888 --token T \
//     --query 'subscription { stateChanges { changes { map key } } }' --wait-for ID
//
// Exit codes: 0 done, 1 error, 2 timeout, 64 bad arguments.

import { parseArgs } from 'node:util';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    query: { type: 'string' },
    'wait-for': { type: 'string' },
    timeout: { type: 'string', default: '30' }
  }
});
if (!values.url || !values.token || !values.query) {
  console.error('--url, --token and --query are required');
  process.exit(64);
}

const url = values.url.replace(/^http/, 'ws') + '/api/datastore/graphql';
const headers = { Authorization: `token ${values.token}` };

class TokenWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { headers });
  }
}

const client = createClient({ url, webSocketImpl: TokenWebSocket, retryAttempts: 0 });
const timer = setTimeout(() => {
  console.error(`timed out after ${values.timeout} s`);
  process.exit(2);
}, Number(values.timeout) * 1000);

let code = 0;
try {
  for await (const result of client.iterate({ query: values.query })) {
    const line = JSON.stringify(result);
    console.log(line);
    if (result.errors) {
      code = 1;
      break;
    }
    if (values['wait-for'] && line.includes(values['wait-for'])) {
      break;
    }
  }
} catch (error) {
  console.error(`failed: ${error instanceof Error ? error.message : JSON.stringify(error)}`);
  code = 1;
}
clearTimeout(timer);
await client.dispose();
process.exit(code);
