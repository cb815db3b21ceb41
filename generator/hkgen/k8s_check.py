"""Verification checker (placeholder until its issue lands): see verify.CHECKERS."""

from __future__ import annotations

from .errors import Problem
from .plan import Plan
from .render import Rendered
from .verify import Built

__all__ = ["check"]


def check(plan: Plan, tree: Rendered, built: list[Built]) -> list[Problem]:
    """No checks yet."""
    return []
