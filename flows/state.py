"""The state of one conversation, as the engine sees it and as storage keeps it (encrypted)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 1
SUBMITTED = "submitted"  # the step once the summary is sent; not a step of the questionnaire


class Evidence(BaseModel):
    """What the official offered as evidence: links, short notes, or a promise to send later."""

    model_config = ConfigDict(extra="forbid")

    links: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    later: bool = False


class StoredFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    media_type: str
    size: int


Answer = str | list[str] | Evidence | None  # None: an optional step the official skipped

Pending = Literal["cancel", "delete", "return"]
Phase = Literal["intake", "submitted"]


class IntakeState(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    version: int = STATE_VERSION
    language: str
    step: str
    phase: Phase = "intake"
    consented: bool = False
    answers: dict[str, Answer] = Field(default_factory=dict)
    history: list[str] = Field(default_factory=list)
    files: list[StoredFile] = Field(default_factory=list)
    pending: Pending | None = None
    case_reference: str | None = None
    previous_reference: str | None = None  # the closed case a returning official started over from
    # What the official wrote while their case waited: posted in the thread at the claim.
    relay_backlog: list[str] = Field(default_factory=list)

    @classmethod
    def submitted(cls, language: str, reference: str) -> IntakeState:
        """What is kept once the answers have become a case: no answers, just the reference."""
        return cls(
            language=language,
            step=SUBMITTED,
            phase="submitted",
            consented=True,
            case_reference=reference,
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> IntakeState:
        return cls.model_validate_json(data)
