"""The state of one conversation, as the engine sees it and as storage keeps it (encrypted)."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 1
SUBMITTED = "submitted"  # the step once the summary is sent; not a step of the questionnaire


class Evidence(BaseModel):
    """What the official offered as evidence: links, short notes, or a promise to send later."""

    model_config = ConfigDict(extra="forbid")

    links: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    later: bool = False

    def copied(self) -> Evidence:
        """A copy to change freely, as `model_copy(deep=True)` (see IntakeState.copied)."""
        shallow = self.__copy__()
        fields = shallow.__dict__
        fields["links"] = self.links.copy()
        fields["notes"] = self.notes.copy()
        return shallow


class StoredFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    media_type: str
    size: int


Answer = str | list[str] | Evidence | None  # None: an optional step the official skipped

# What the conversation waits for besides the current step: a confirmation of /abbrechen or
# /loeschen, a returning official's choice, whether to switch to the talk lane, or whether
# to send at once after a safety hit. (Not storage/outbox.Pending, a message to send.)
Awaiting = Literal["cancel", "delete", "return", "talk", "send_now"]
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
    pending: Awaiting | None = None  # the field keeps its name: stored states stay readable
    # Rises whenever the official is moved to another prompt; part of every prompt id, so a
    # button of an earlier prompt is refused (flows/picks.py). Absent in older stored states.
    prompt_serial: int = 0
    case_reference: str | None = None
    previous_reference: str | None = None  # the closed case a returning official started over from
    # Only in states stored before issue 11 item 7 (words were held here until the claim);
    # now always empty: the handoff posts a leftover at the next occasion and clears it.
    relay_backlog: list[str] = Field(default_factory=list)
    # The safety layer's classes this intake hit ("danger", "suicidal"): makes it urgent.
    safety: list[str] = Field(default_factory=list)
    # How the official chose to be reached ("callback", "email", …): later messages follow it.
    contact: str | None = None

    @classmethod
    def submitted(cls, before: IntakeState, reference: str) -> IntakeState:
        """What is kept once the answers have become a case: no answers, just the reference
        (and the prompt count, so buttons of the finished intake stay outdated)."""
        return cls(
            language=before.language,
            step=SUBMITTED,
            phase="submitted",
            consented=True,
            case_reference=reference,
            prompt_serial=before.prompt_serial,
            contact=before.contact,
        )

    def copied(self) -> IntakeState:
        """A copy to change freely, equal to `model_copy(deep=True)` but made by hand: the
        engine takes one per message, and `deepcopy` was a fifth of a step's time.

        Every field is named in COPIED_FIELDS or SHARED_FIELDS (a test checks it): a new
        field must be added there, and copied here when it can be changed in place."""
        shallow = self.__copy__()  # its own __dict__ and fields set; values still shared
        fields = shallow.__dict__
        fields["answers"] = {
            key: value if value is None or type(value) is str else _copied(value)
            for key, value in self.answers.items()
        }
        fields["history"] = self.history.copy()
        fields["files"] = self.files.copy()  # StoredFile is frozen: the items are shared
        fields["relay_backlog"] = self.relay_backlog.copy()
        fields["safety"] = self.safety.copy()
        return shallow

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> IntakeState:
        return cls.model_validate_json(data)


# How IntakeState.copied treats each field: copied, or shared because it cannot change.
COPIED_FIELDS = frozenset({"answers", "history", "files", "relay_backlog", "safety"})
SHARED_FIELDS = frozenset(
    {
        "version",
        "language",
        "step",
        "phase",
        "consented",
        "pending",
        "prompt_serial",
        "case_reference",
        "previous_reference",
        "contact",
    }
)


def _copied(value: Any) -> Any:
    """An answer, copied: strings and None shared, a list of choice ids or Evidence copied."""
    if value is None or type(value) is str:
        return value
    if type(value) is list and all(type(item) is str for item in value):
        return value.copy()
    if type(value) is Evidence:
        return value.copied()
    return copy.deepcopy(value)  # not an answer the engine writes; copied all the same
