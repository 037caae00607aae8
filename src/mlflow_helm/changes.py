"""Change records: what a step would do (plan) or did (apply).

The same records are printed as text (like a changeset) and as JSON (`--output json`); the
JSON schema is documented in docs/cli.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CREATE = "create"
UPDATE = "update"
UNCHANGED = "unchanged"
DELETE = "delete"

SYMBOLS = {CREATE: "+", UPDATE: "~", UNCHANGED: "=", DELETE: "-"}


@dataclass
class Change:
    """One resource and what happens to it. `detail` never holds a secret."""

    action: str
    kind: str
    name: str
    detail: str = ""
    step: str = ""
    # Extra data the step needs at apply time (never printed, never serialised).
    data: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def mutating(self) -> bool:
        return self.action != UNCHANGED

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("data")
        return out

    def line(self) -> str:
        text = f"{SYMBOLS[self.action]} {self.action:<9} {self.kind:<28} {self.name}"
        return f"{text}  ({self.detail})" if self.detail else text


def summary(changes: list[Change]) -> dict[str, int]:
    counts = {CREATE: 0, UPDATE: 0, UNCHANGED: 0, DELETE: 0}
    for change in changes:
        counts[change.action] += 1
    return counts
