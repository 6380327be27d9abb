"""What one GraphQL operation may ask for: nesting depth, aliases, tokens and cost.

Depth and aliases are Strawberry's own validation rules, tokens graphql-core's parser
limit. The cost is ours: each field
selected costs 1, and what is selected inside a list is counted once per item the list may
hold: its `first` or `limit` argument (or its connection's: a connection's `edges` hold
what the field above asked for) when written in the query, `MAX_PAGE` when it is a variable
(variables are not known when the query is validated; resolvers refuse a page larger than
`MAX_PAGE`), else `DEFAULT_PAGE` (lists without paging are small: kernels, sessions, a
notebook's cells are counted at that size). An operation over `MAX_COST` is refused before
it runs, with the cost it would have had.

Introspection is bounded by the schema's own size, so it costs one per field, but it may
not walk types recursively (`fields { type { fields { ... } } }`, which grows with each
level): each of its lists (types, fields, args, ...) may appear once on a path. The query
GraphiQL and other clients send to learn the schema does not need more.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    parse,
    validate,
)
from graphql.type.introspection import (
    SchemaMetaFieldDef,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension

from ..errors import BadRequest

__all__ = ["DEFAULT_PAGE", "MAX_COST", "MAX_DEPTH", "MAX_PAGE", "Limits", "page_size"]

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5_000
MAX_COST = 50_000
DEFAULT_PAGE = 100
MAX_PAGE = 1_000
_PAGING_ARGUMENTS = ("first", "limit")
_INTROSPECTION_LISTS = frozenset(
    {"types", "fields", "inputFields", "interfaces", "possibleTypes", "enumValues", "args"}
)
_META_FIELDS = {
    "__schema": SchemaMetaFieldDef,
    "__type": TypeMetaFieldDef,
    "__typename": TypeNameMetaFieldDef,
}


def _is_list(type_: Any) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class CostLimit(ValidationRule):
    """Refuse an operation whose cost (see the module docstring) is over `MAX_COST`, or that
    walks introspection's types recursively."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        context: ValidationContext = self.context
        root = context.schema.get_root_type(node.operation)
        if root is None:
            return
        self._recursive: str | None = None
        cost = self._cost(node.selection_set, root, frozenset(), None, ())
        if self._recursive is not None:
            self.report_error(
                GraphQLError(
                    f"introspection may select {self._recursive} once on a path, not inside itself",
                    node,
                )
            )
        elif cost > MAX_COST:
            self.report_error(
                GraphQLError(
                    f"the operation would cost {cost}, more than the limit of {MAX_COST}: "
                    "ask for fewer items (first, limit) or fewer fields",
                    node,
                )
            )

    def _cost(
        self,
        selections: SelectionSetNode | None,
        parent: Any,
        fragments: frozenset[str],
        page: int | None,
        expanded: tuple[str, ...],
    ) -> int:
        """The cost of `selections` on type `parent`; `page`: the page size a connection
        field above asked for (its `edges` hold that many); `expanded`: the introspection
        lists on the path."""
        if selections is None or parent is None or not hasattr(parent, "fields"):
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name in _INTROSPECTION_LISTS and parent.name.startswith("__"):
                    if name in expanded:
                        self._recursive = name
                        return 0
                    expanded_here = (*expanded, name)
                else:
                    expanded_here = expanded
                field = _META_FIELDS.get(name) or parent.fields.get(name)
                if field is None:
                    continue  # an unknown field: another rule reports it
                asked = self._page(selection)
                many = (asked or page or DEFAULT_PAGE) if _is_list(field.type) else 1
                if name.startswith("__") or parent.name.startswith("__"):
                    many = 1  # introspection: bounded by the schema, and by `expanded`
                inner_page = None if _is_list(field.type) else asked
                inner = self._cost(
                    selection.selection_set,
                    get_named_type(field.type),
                    fragments,
                    inner_page,
                    expanded_here,
                )
                total += 1 + many * inner
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.context.schema.get_type(condition.name.value) if condition else parent
                total += self._cost(selection.selection_set, target, fragments, page, expanded)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in fragments:
                    continue  # unknown or cyclic: other rules report it
                target = self.context.schema.get_type(fragment.type_condition.name.value)
                total += self._cost(
                    fragment.selection_set, target, fragments | {name}, page, expanded
                )
        return total

    def _page(self, node: FieldNode) -> int | None:
        """The page size the field's own `first` or `limit` argument asks for, if any."""
        for argument in node.arguments or ():
            if argument.name.value in _PAGING_ARGUMENTS:
                value = argument.value
                if isinstance(value, IntValueNode):
                    return max(int(value.value), 1)
                if isinstance(value, VariableNode):
                    return MAX_PAGE
        return None


_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    CostLimit,
)
"""The validation rules, made once: the same rules for every operation let the validation
of a query text be cached, as its parse is."""
CACHED_QUERIES = 256


@lru_cache(maxsize=CACHED_QUERIES)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


@lru_cache(maxsize=CACHED_QUERIES)
def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    return validate(schema, document, rules)


class Limits(SchemaExtension):
    """The limits of every operation, checked when it is parsed and validated; the parse
    and the validation of a query text are kept (the last `CACHED_QUERIES`): a text sent
    again, as polls and subscriptions do, is neither parsed nor validated again. One
    extension, not one per limit: Strawberry asks each extension for its results at every
    result a subscription sends."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = _parse(context.query or "", MAX_TOKENS)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        rules = (*context.validation_rules, *_RULES)
        context.pre_execution_errors = _validate(
            context.schema._schema, context.graphql_document, rules
        )
        yield


def page_size(value: int | None, name: str = "first") -> int:
    """A list's page size as a resolver takes it: `DEFAULT_PAGE` when not given, else 1 to
    `MAX_PAGE` (BadRequest otherwise)."""
    if value is None:
        return DEFAULT_PAGE
    if not 1 <= value <= MAX_PAGE:
        raise BadRequest(f"{name} must be from 1 to {MAX_PAGE}, not {value}")
    return value
