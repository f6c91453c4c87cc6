"""A problem found in an operator-edited file, named by where it is and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def location(parts: tuple[int | str, ...], raw: object = None) -> str:
    """Render a pydantic error location the way the file reads: `steps.role.prompt.de`.

    A list item that has an `id` is named by it rather than by its index, so the
    operator can find it in the file.
    """
    text = ""
    node = raw
    for part in parts:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("id") if isinstance(item, dict) else None
            text += f".{name}" if isinstance(name, str) else f"[{part}]"
            node = item
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


def describe_validation_error(error: ValidationError, raw: object = None) -> list[Problem]:
    problems = []
    for item in error.errors():
        kind = item["type"]
        if kind == "missing":
            what = "is required but missing"
        elif kind == "extra_forbidden":
            what = "is not a known key"
        else:
            what = item["msg"].removeprefix("Value error, ")
            if (
                "input" in item
                and kind not in ("value_error",)
                and not isinstance(item["input"], dict | list)
            ):
                what += f" (got {item['input']!r})"
        problems.append(Problem(location(tuple(item["loc"]), raw), what))
    return problems
