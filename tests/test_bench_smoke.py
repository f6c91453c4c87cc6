"""The bench's sections run with tiny sizes, so `make bench` cannot rot between runs.

Figures are not judged here (no timing asserts): only that every section produces its
figures, counts no failure, and that the results file says what it was measured on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import (
    bench_adapter,
    bench_crypto,
    bench_drain,
    bench_flood,
    bench_latency,
    bench_matrix,
    bench_ptb,
    bench_scale,
)
from tests.bench_results import Results
from tests.synapse import Synapse


def _no_failures(results: Results, section: str) -> None:
    figures = [figure for figure in results.figures if figure.section == section]
    assert figures, f"{section}: no figures"
    assert results.failures() == 0, results.table()


def test_latency_scale_and_crypto_produce_figures_and_a_results_file(tmp_path: Path) -> None:
    results = Results()
    bench_latency.run(
        results,
        bench_latency.Sizes(
            concurrent=((1, 20), (5, 4)),
            realistic_conversations=3,
            realistic_seconds=1.5,
            pause=(0.1, 0.5),
        ),
    )
    bench_scale.run(results, bench_scale.Sizes(intakes=(300,), resumed=20))
    bench_crypto.run(results, bench_crypto.Sizes(rounds=3, officials=2))
    for section in (bench_latency.SECTION, bench_scale.SECTION, bench_crypto.SECTION):
        _no_failures(results, section)
    assert results.get(bench_latency.SECTION, "1 at once: p50") > 0
    assert results.get(bench_scale.SECTION, "300 intakes: peak RSS") > 0
    written = json.loads(results.write(tmp_path / "results.json").read_text())
    assert {"cores", "python", "sqlalchemy", "python-telegram-bot", "lotse", "date"} <= set(
        written["machine"]
    )
    assert len(written["figures"]) == len(results.figures)
    assert "| latency | 1 at once: p50 |" in results.table()


def test_the_pipeline_and_the_adapter_burst_produce_figures_without_failures() -> None:
    """Lotse beside python-telegram-bot: in memory, then from Bot API JSON with PTB durable."""
    results = Results()
    bench_ptb.run(results, bench_ptb.Sizes(officials=2, runs=1))
    bench_adapter.run(results, bench_adapter.Sizes(officials=3))
    for section in (bench_ptb.SECTION, bench_adapter.SECTION):
        _no_failures(results, section)
    assert results.get(bench_ptb.SECTION, "ratio lotse/ptb") > 0
    assert results.get(bench_adapter.SECTION, "ratio lotse/ptb (adapter, durable peer)") > 0


def test_a_flood_is_slowed_with_one_notice_and_nothing_is_lost() -> None:
    """Tiny sizes; the p99 ratio is a timing and is only required to be there."""
    results = Results()
    sizes = bench_flood.Sizes(
        calm=3,
        pause=(0.2, 0.5),
        window=3.0,
        flood_seconds=0.4,  # 20 messages at 50/s: 10 over the burst, 5 s of pacing
        flood_after=0.5,
        tail=6.0,
    )
    bench_flood.run(results, sizes)
    section = bench_flood.SECTION
    assert results.get(section, "calm p99 ratio flood/normal") > 0
    assert results.get(section, "slow-down notices to the flooder") == 1
    assert results.get(section, "flooder messages sent") == 20
    for name in ("calm unanswered or apologies", "flooder messages lost", "apologies"):
        assert results.get(section, name) == 0, results.table()


def test_the_failure_count_sees_an_apology() -> None:
    results = Results()
    results.add("x", "replies", 10, "ms")
    results.add("x", "apologies", 2, "failures")
    results.add("x", "limit", 1, "violations")
    assert results.failures() == 3


@pytest.mark.slow
def test_the_telegram_drain_runs_against_the_emulator() -> None:
    results = Results()
    bench_drain.run(results, bench_drain.Sizes(officials=20))
    _no_failures(results, bench_drain.SECTION)
    assert results.get(bench_drain.SECTION, "time to the last reply") > 0


@pytest.mark.slow
@pytest.mark.synapse
def test_the_matrix_round_trip_runs_on_synapse(synapse: Synapse) -> None:
    results = Results()
    bench_matrix.measure(results, synapse, bench_matrix.Sizes(round_trips=3))
    _no_failures(results, bench_matrix.SECTION)
    assert results.get(bench_matrix.SECTION, "round trip p50") > 0
