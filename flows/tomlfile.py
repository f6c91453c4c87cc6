"""Reading an operator-edited TOML file into its schema, every failure named as a Problem."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from flows.problems import Problem, describe_validation_error

Schema = TypeVar("Schema", bound=BaseModel)


def read_toml(path: Path, schema: type[Schema]) -> tuple[Schema | None, list[Problem]]:
    """The file parsed and validated against `schema`, or None and what is wrong with it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        return None, [Problem("file", f"cannot be read: {error.strerror or error}")]
    except tomllib.TOMLDecodeError as error:
        return None, [Problem("file", f"is not valid TOML: {error}")]
    try:
        return schema.model_validate(raw), []
    except ValidationError as error:
        return None, describe_validation_error(error, raw)
