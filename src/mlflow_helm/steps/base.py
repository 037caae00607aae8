"""A step reads what exists (`plan`, read-only) and makes it so (`apply`)."""

from __future__ import annotations

from ..changes import UNCHANGED, Change
from ..context import Context


class Step:
    name = "step"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opts = ctx.opts

    def enabled(self) -> bool:
        return True

    def plan(self) -> list[Change]:
        raise NotImplementedError

    def apply(self, changes: list[Change]) -> None:
        raise NotImplementedError

    def change(self, action: str, kind: str, name: str, detail: str = "", **data) -> Change:
        return Change(action, kind, name, detail, self.name, data)

    def run(self, changes: list[Change]) -> None:
        """Apply only when something differs: a re-run makes no mutating call."""
        if any(c.action != UNCHANGED for c in changes):
            self.apply(changes)
