"""(being written)"""

Query = None
Mutation = None
Subscription = None
