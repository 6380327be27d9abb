"""GraphQL over the datastore (Strawberry): one typed API, the same roles as REST.

context.py     who asks (`Caller`) and the role checks every resolver makes
authorize.py   jupyter_server's authorizer, asked for each root field as REST asks it
schema.py      the root types merged from the modules below, limits, error codes
limits.py      depth, aliases, tokens and cost of one operation; parse and validation kept
errors.py      exceptions as GraphQL errors with codes
transport.py   Strawberry's async view on Tornado: HTTP, and WebSocket subscriptions
               (graphql-transport-ws and the legacy graphql-ws) on our WebSocket
sharing.py     one event, many subscribers: results and frames computed once
streams.py     callbacks to a subscription's generator, through a bounded queue
paging.py      connections (edges, cursors, pageInfo)
ide.py         GraphiQL's page, its files served by this server
server.py      status, and the state room's changes
kernels.py     kernels, kernel specs, sessions, terminals, roles and rules
executions.py  server-side runs: records, run, cancel, answer input, progress
events.py      the event log and the caller's notifications
documents.py   open documents and peers, notebooks and cells, edits, save, undo, forks
"""
