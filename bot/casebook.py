"""A decrypted case as counsellors read it: on screen (`cases show`) and as an export."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from flows.answers import one_line, quoted
from flows.engine import Engine
from flows.state import IntakeState
from storage.casefile import OpenedCase
from storage.keyfile import private_folder

MANIFEST = "SHA256SUMS"


def answers_as_lines(engine: Engine, case: OpenedCase, language: str) -> list[tuple[str, str]]:
    """(question label, answer) for the intake, in the questionnaire's order."""
    intake = case.intake
    state = IntakeState.model_validate(
        {
            "language": intake.get("language", language),
            "step": engine.questionnaire.summary.id,
            "answers": intake.get("answers", {}),
            "files": intake.get("files", []),
            "consented": True,
        }
    )
    render = engine.render
    lines = []
    for step in render.answered_questions(state):
        shown = render.answer(step, state.answers[step.id], state, language, limit=None)
        lines.append((step.label[language], shown))
    known = {step.id for step in engine.questionnaire.steps.values()}
    for step_id, value in intake.get("answers", {}).items():
        if step_id not in known:  # a question since removed from the questionnaire
            lines.append((step_id, json.dumps(value, ensure_ascii=False)))
    return lines


def _item_line(kind: str, content: dict[str, Any]) -> str:
    who = str(content.get("from") or content.get("by") or "")
    text = str(content.get("text", ""))
    files = [
        entry.get("name", "?") for entry in content.get("files", []) if isinstance(entry, dict)
    ]
    if files:
        text = ", ".join(one_line(name) for name in files) + (f" – {text}" if text else "")
    # their words, quoted: a line of them cannot pass for a heading or another entry
    return f"{one_line(kind)}{f' ({one_line(who)})' if who else ''}: {quoted(text)}"


def as_text(engine: Engine, case: OpenedCase, language: str = "de") -> str:
    lines = [
        f"# {case.reference}{'  (urgent)' if case.urgent else ''}",
        "",
        f"status: {case.status} · channel: {case.channel} · "
        f"submitted: {case.created_at:%Y-%m-%d %H:%M} UTC"
        + (f" · closed: {case.closed_at:%Y-%m-%d %H:%M} UTC" if case.closed_at else ""),
        "",
        "## Intake",
        "",
    ]
    lines += [
        f"- **{label}**: {answer}" for label, answer in answers_as_lines(engine, case, language)
    ]
    later = case.items[1:]
    if later:
        lines += ["", "## Transcript", ""]
        lines += [
            f"- {item.at:%Y-%m-%d %H:%M} · {_item_line(item.kind, item.content)}" for item in later
        ]
    if case.files:
        lines += ["", "## Attachments", ""]
        lines += [
            f"- {one_line(file.name)} ({one_line(file.media_type)}, {len(file.data)} bytes)"
            for file in case.files
        ]
    return "\n".join(lines) + "\n"


def _safe_name(index: int, name: str) -> str:
    base = re.sub(r"[^\w.\-]+", "_", Path(name).name).strip("._") or "attachment"
    return f"{index:02d}-{base[:80]}"


class ExportError(Exception):
    """The export folder cannot be written; the message names it and what to do."""


def export(engine: Engine, case: OpenedCase, folder: Path, language: str = "de") -> Path:
    """Write the case record, its attachments and a SHA-256 manifest into folder/REFERENCE."""
    target = folder / case.reference
    try:
        private_folder(folder)
        target.mkdir(mode=0o700)
        target.chmod(0o700)
    except FileExistsError as error:
        raise ExportError(
            f"{target} exists already; choose another --out or move it away"
        ) from error
    except OSError as error:
        raise ExportError(
            f"{target} cannot be made: {error.strerror}; choose another --out"
        ) from error
    attachments = target / "attachments"
    written: list[Path] = []

    def write(path: Path, data: bytes) -> None:
        private_folder(path.parent)
        path.write_bytes(data)
        path.chmod(0o600)
        written.append(path)

    files = []
    for index, file in enumerate(case.files, start=1):
        path = attachments / _safe_name(index, file.name)
        write(path, file.data)
        files.append(
            {
                "name": file.name,
                "media_type": file.media_type,
                "path": str(path.relative_to(target)),
            }
        )
    record = {
        "reference": case.reference,
        "status": case.status,
        "urgent": case.urgent,
        "channel": case.channel,
        "submitted_at": case.created_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "intake": case.intake,
        "answers": [
            {"question": label, "answer": answer}
            for label, answer in answers_as_lines(engine, case, language)
        ],
        "transcript": [
            {
                "position": item.position,
                "kind": item.kind,
                "at": item.at.isoformat(),
                **item.content,
            }
            for item in case.items[1:]
        ],
        "attachments": files,
    }
    write(target / "case.json", (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode())
    write(target / "case.md", as_text(engine, case, language).encode())
    manifest = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(target)}\n"
        for path in sorted(written)
    )
    write(target / MANIFEST, manifest.encode())
    return target
