"""Who may do what: roles per document or folder, checked on every request and message."""

from .permissions import Permissions
from .roles import Role, Rule, RuleSet

__all__ = ["Permissions", "Role", "Rule", "RuleSet"]
