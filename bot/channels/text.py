"""A reply as plain text, for channels without buttons (the terminal, plain Matrix clients)."""

from __future__ import annotations

from bot.core.types import Reply


def reply_as_text(reply: Reply) -> str:
    lines = [reply.text]
    if reply.choices:
        lines.append("")
        for number, choice in enumerate(reply.choices, start=1):
            lines.append(f"  {number}. {choice.label}" if reply.numbered else f"  → {choice.label}")
    return "\n".join(lines)
