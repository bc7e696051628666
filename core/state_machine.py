"""A transition table: which status may follow which. Each entity declares exactly one."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import IllegalTransition


class TransitionTable:
    def __init__(self, entity: str, allowed: Mapping[str, frozenset[str] | set[str]]):
        self.entity = entity
        self._allowed = {state: frozenset(nexts) for state, nexts in allowed.items()}

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self._allowed)

    def next_states(self, current: str) -> frozenset[str]:
        return self._allowed.get(current, frozenset())

    def is_allowed(self, current: str, target: str) -> bool:
        return target in self.next_states(current)

    def is_terminal(self, state: str) -> bool:
        return not self.next_states(state)

    def check(self, current: str, target: str) -> None:
        """Raise IllegalTransition (with the allowed next states) unless current → target is allowed."""
        if not self.is_allowed(current, target):
            raise IllegalTransition(
                entity=self.entity, current=current, target=target, allowed=self.next_states(current)
            )
