"""How a user's role on a path is found, without a server."""

from __future__ import annotations

import pytest

from jupyter_datastore.auth.roles import Role, Rule, RuleSet, parent_paths
from jupyter_datastore.errors import BadRequest


def rules(**by_path: dict[str, object]) -> RuleSet:
    found = {path.replace("__", "/"): Rule.parse(body) for path, body in by_path.items()}
    return RuleSet(rules=found, default_role=Role.NONE, owners=frozenset({"root"}))


def test_parent_paths_go_up_to_the_root() -> None:
    assert parent_paths("/a/b/c.ipynb") == ["a/b/c.ipynb", "a/b", "a", ""]
    assert parent_paths("") == [""]


def test_the_nearest_rule_decides_user_then_groups_then_default() -> None:
    found = rules(
        a={"users": {"bob": "owner"}, "groups": {"team": "runner"}, "default": "viewer"},
        a__b={"groups": {"team": "editor", "leads": "owner"}},
    )
    # a/b decides for team members (their highest group role), not for bob's own rule above.
    assert found.role_of("bob", {"team"}, "a/b/x.ipynb") == Role.EDITOR
    assert found.role_of("bob", {"team", "leads"}, "a/b/x.ipynb") == Role.OWNER
    # a/b names neither carol nor her groups and has no default: a decides.
    assert found.role_of("carol", set(), "a/b/x.ipynb") == Role.VIEWER
    assert found.role_of("bob", set(), "a/x.ipynb") == Role.OWNER
    assert found.role_of("dan", {"team"}, "a/x.ipynb") == Role.RUNNER
    # Outside every rule: the server's default; configured owners own everything.
    assert found.role_of("bob", {"team"}, "elsewhere.ipynb") == Role.NONE
    assert found.role_of("root", set(), "a/b/x.ipynb") == Role.OWNER
    assert found.role_of(None, set(), "a/x.ipynb") == Role.VIEWER  # anonymous: the default
    assert found.decided_by("a/b/x.ipynb") == "a/b"
    assert found.decided_by("elsewhere") is None


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"users": {"bob": "admin"}},
        {"users": ["bob"]},
        {"groups": {"": "viewer"}},
        {"default": 3},
        {"extra": {}},
        {"users": {f"u{n}": "viewer" for n in range(1001)}},
    ],
)
def test_bad_rules_are_refused(body: object) -> None:
    with pytest.raises(BadRequest):
        Rule.parse(body)


def test_a_rule_round_trips_as_json() -> None:
    rule = Rule.parse({"users": {"b": "Editor", "a": "runner"}, "default": None})
    expected = {"users": {"a": "runner", "b": "editor"}, "groups": {}, "default": None}
    assert rule.to_json() == expected
    assert Rule.parse(rule.to_json()) == rule
