"""A submission's unit reads and writes rows whole: one statement each, nothing twice.

Through the ORM a submission was ~20 statements plus the ORM's own work for each, while
it held SQLite's one write turn (storage/statements.py). This pins what it is now."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import event

from bot.core.types import Inbound
from tests.bench_rig import ANSWERS, running_core


def _what(statement: str) -> str:
    """The verb and the first table a statement names, e.g. "SELECT cases"."""
    verb = statement.split(maxsplit=1)[0]
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement)
    return f"{verb} {table.group(1) if table else ''}".strip()


async def test_a_submission_reads_and_writes_each_row_once(tmp_path: Path) -> None:
    async with running_core(tmp_path) as rig:
        for official, answers in (("a", ANSWERS), ("b", ANSWERS[:-1])):
            for number, answer in enumerate(answers):  # a's case begins the year's numbers
                await rig.core.handle(
                    Inbound("bench", official, official, answer, f"{official}{number}")
                )
        await rig.core.settle()
        seen: list[str] = []

        def executed(*arguments: object) -> None:
            seen.append(_what(str(arguments[2])))

        engine = rig.app.store.database.sync_engine
        event.listen(engine, "before_cursor_execute", executed)
        try:
            await rig.core.handle(Inbound("bench", "b", "b", ANSWERS[-1], "b-submit"))
        finally:
            event.remove(engine, "before_cursor_execute", executed)
        assert len(await rig.app.store.cases()) == 2
    assert seen == [
        "BEGIN",
        "SELECT processed_events",  # a duplicate?
        "SELECT conversations",  # the intake, locked
        "SELECT team_keys",  # the key to seal the case key to …
        "SELECT counsellors",  # … and who signed it (not their handles)
        "UPDATE reference_counters",  # the case's number
        "INSERT cases",
        "INSERT case_items",  # the intake record, sealed
        "SELECT audit_log",  # the chain's end …
        "SELECT audit_head",  # … and the record of it
        "INSERT audit_log",
        "UPDATE audit_head",
        "INSERT outbox",  # the staff room's post
        "SELECT cases",  # the queue place
        "UPDATE conversations",
        "INSERT processed_events",
        "INSERT outbox",  # the replies to the official
    ], seen
