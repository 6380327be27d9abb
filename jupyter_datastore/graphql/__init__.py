"""GraphQL over the datastore (Strawberry): one typed API, the same roles as REST.

context.py    who asks (`Caller`) and the role checks every resolver makes
schema.py     the root types merged from the modules below, limits, error codes
limits.py     depth, aliases, tokens and cost of one operation
errors.py     exceptions as GraphQL errors with codes
transport.py  Strawberry's async view on Tornado: HTTP, and WebSocket subscriptions
              (graphql-transport-ws and the legacy graphql-ws) on our WebSocket
server.py     status, kernels, kernel specs, sessions, terminals, roles, state changes
"""
