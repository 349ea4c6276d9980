"""What every stored event carries, and the figure rules every event obeys.

Events are frozen pydantic models with validation in the model, so an event that breaks an
invariant cannot be constructed, whoever builds it. ``timestamp`` is the transaction time
(``recorded_at``): the store stamps it when the event is saved, never the user.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A placeholder until the store stamps the event; no stored event carries it.
UNRECORDED = datetime(1970, 1, 1, tzinfo=UTC)

# At most the largest 64-bit integer: what SQLite and PostgreSQL store and JSON readers keep exact.
Count = Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)]
Qualifier = Literal["exact", "at_least", "about", "up_to"]
Text = Annotated[str, Field(min_length=1)]


class Immutable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DomainEvent(Immutable):
    originator_id: UUID
    originator_version: int = Field(ge=1)
    timestamp: datetime = UNRECORDED
    recorded_by: Text

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp


class Figures(Immutable):
    """A count as a range: ``low <= best <= high``, all >= 0; ``best`` may be unknown."""

    low: Count
    high: Count
    best: Count | None = None
    qualifier: Qualifier | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Figures:
        check_range(self.low, self.best, self.high)
        return self


def check_range(low: int, best: int | None, high: int) -> None:
    if high < low:
        raise ValueError(f"high: must be >= low ({high} < {low})")
    if best is not None and not low <= best <= high:
        raise ValueError(f"best: must be between low and high ({low} <= {best} <= {high} fails)")
