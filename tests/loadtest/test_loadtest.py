"""translane loadtest against the simulated provider (and the service) on loopback: shapes, measures, outputs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from translane.cli import _parser
from translane.config import load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tokens import count_tokens
from translane.tools.loadtest import LoadConfig, Record, Target, run
from translane.tools.loadtest._config import LoadConfigError
from translane.tools.loadtest._data import fill, prompts
from translane.tools.loadtest._records import percentile, spread
from translane.tools.loadtest._schedule import arrivals

from ..conftest import Sim

CHAT = "doubao-seed-1-6-251015"


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)


def url(sim: Sim) -> str:
    return f"{sim.url}/chat/completions"


def cfg(sim: Sim, **kw: object) -> LoadConfig:
    return LoadConfig(targets=(Target("target", url=url(sim)),), model=CHAT, **kw)  # type: ignore[arg-type]


async def test_a_constant_300_rpm_schedule_over_10_s_sends_50_requests_on_time(sim: Sim) -> None:
    records, summaries = await run(cfg(sim, rate_per_s=5.0, duration_s=10.0), progress=False)
    assert len(records) == 50 and summaries[0].ok == 50
    for i, r in enumerate(sorted(records, key=lambda r: r.n)):
        assert r.scheduled_s == pytest.approx(i * 0.2)
        assert r.sent_s == pytest.approx(r.scheduled_s + r.lateness_ms / 1000, abs=1e-9)
        assert r.lateness_ms < 50
    assert summaries[0].lateness_ms is not None and summaries[0].lateness_ms["p99"] < 20
    assert (await sim.stats())["models"][CHAT]["admitted"] == 50


def _ks_exponential(gaps: list[float], rate: float) -> float:
    """Kolmogorov-Smirnov distance between the gaps and an exponential distribution of `rate`."""
    s = sorted(gaps)
    n = len(s)
    return max(max((i + 1) / n - (1 - math.exp(-rate * x)), (1 - math.exp(-rate * x)) - i / n) for i, x in enumerate(s))


@pytest.mark.parametrize(
    ("kind", "burstiness", "cv"), [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0), ("gamma", 4.0, 0.5)]
)
def test_random_arrivals_keep_the_mean_rate_and_their_spread(kind: str, burstiness: float, cv: float) -> None:
    times = [t for _, t in zip(range(20_001), arrivals(10.0, kind, burstiness, seed=7), strict=False)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.1, rel=0.03)
    assert statistics.stdev(gaps) / mean == pytest.approx(cv, rel=0.05)
    if kind == "poisson":
        assert _ks_exponential(gaps, 10.0) < 1.36 / math.sqrt(len(gaps))  # 5% critical value


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = [t for _, t in zip(range(5), arrivals(4.0, "constant"), strict=False)]
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


async def test_a_closed_loop_never_has_more_than_n_in_flight(sim: Sim) -> None:
    await sim.set(ttft_s=0.02)
    records, summaries = await run(cfg(sim, concurrency=4, requests=40), progress=False)
    assert summaries[0].ok == 40
    events = sorted([(r.sent_s, 1) for r in records] + [(r.sent_s + r.e2e_ms / 1000, -1) for r in records])
    peak = level = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    assert peak == 4


def test_percentiles_match_a_reference_computation() -> None:
    values = [float(v) for v in (13, 1, 8, 21, 3, 5, 2, 34, 1, 55, 89, 144)]
    reference = statistics.quantiles(values, n=100, method="inclusive")
    for p in range(1, 100):
        assert percentile(values, p) == pytest.approx(reference[p - 1])
    s = spread(values)
    assert s is not None and s["min"] == 1 and s["max"] == 144 and s["median"] == statistics.median(values)
    assert s["stdev"] == pytest.approx(statistics.stdev(values))


def test_data_rows_fill_placeholders_and_cycle(tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("text,lang\nHello,de\nBye,fr\n", encoding="utf-8")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "One", "n": 1}\n{"text": "Two", "n": 2}\n{"text": "Three", "n": 3}\n')
    rows = prompts(str(csv_file), 0, 0, 0)
    got = [next(rows)["text"] for _ in range(5)]
    assert got == ["Hello", "Bye", "Hello", "Bye", "Hello"]
    rows = prompts(str(jsonl), 0, 0, 0)
    assert [next(rows)["n"] for _ in range(4)] == ["1", "2", "3", "1"]
    body = {"messages": [{"role": "user", "content": "Translate to {{ lang }}: {{text}}"}], "meta": ["{{text}}", 3]}
    assert fill(body, {"text": 'He said "hi"', "lang": "de"}) == {
        "messages": [{"role": "user", "content": 'Translate to de: He said "hi"'}],
        "meta": ['He said "hi"', 3],
    }
    with pytest.raises(LoadConfigError, match="no column 'missing'"):
        fill({"x": "{{missing}}"}, {"text": "a"})


async def test_data_reaches_the_target(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("text\nalpha\nbeta\ngamma\n", encoding="utf-8")
    body = {"model": CHAT, "messages": [{"role": "user", "content": "{{text}}"}]}
    records, _ = await run(cfg(sim, requests=7, concurrency=1, data=str(data), body=body), progress=False)
    assert all(r.ok for r in records)
    # The simulator answers "[sim auto->xx] TEXT": its prompt tokens say which row went.
    assert [r.prompt_tokens for r in sorted(records, key=lambda r: r.n)][:3] == [
        count_tokens(w) + 4 for w in ("alpha", "beta", "gamma")
    ]


async def test_the_early_stop_fires_at_the_configured_error_share(sim: Sim) -> None:
    await sim.set(rate_limit_rate=1.0)
    _, summaries = await run(
        cfg(sim, steps=(20.0, 40.0, 80.0), steps_of="rate", duration_s=0.5, stop_error_share=0.5), progress=False
    )
    assert len(summaries) == 1 and summaries[0].stopped_early
    assert summaries[0].outcomes == {"rate_limited": 10}


async def test_ttft_itl_and_tokens_are_what_the_simulator_sent(sim: Sim) -> None:
    await sim.set(ttft_s=0.2, tokens_per_s=100)
    records, summaries = await run(cfg(sim, concurrency=2, requests=4, stream=True, prompt_tokens=20), progress=False)
    for r in records:
        assert r.ok and r.ttft_ms is not None
        assert 190 <= r.ttft_ms <= 260
        assert r.itl_ms and 7 <= statistics.median(r.itl_ms) <= 14  # 100 tokens/s
        assert r.completion_tokens > 20
    stats = (await sim.stats())["models"][CHAT]
    assert sum(r.completion_tokens for r in records) == stats["completion_tokens"]
    assert summaries[0].tpot_ms is not None


async def test_grpc_target_and_compare(server: RunningServer, sim: Sim) -> None:
    grpc_cfg = LoadConfig(targets=(Target("a", grpc=f"127.0.0.1:{server.port}"),), requests=5, concurrency=2)
    records, summaries = await run(grpc_cfg, progress=False)
    assert summaries[0].ok == 5 and all(r.prompt_tokens > 0 and r.cost > 0 for r in records)
    both = LoadConfig(
        targets=(Target("a", url=url(sim)), Target("b", url=url(sim))),
        model=CHAT,
        rate_per_s=20.0,
        requests=6,
    )
    records, summaries = await run(both, progress=False)
    assert [s.target for s in summaries] == ["a", "b"]
    by_n = {(r.n, r.target): r for r in records}
    assert all(abs(by_n[(n, "a")].sent_s - by_n[(n, "b")].sent_s) < 0.01 for n in range(6))


async def test_the_command_writes_jsonl_and_a_plot_and_never_a_key(
    sim: Sim, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-never-print-this-0123456789"
    monkeypatch.setenv("LOADTEST_KEY", secret)
    out, png = tmp_path / "run.jsonl", tmp_path / "run.png"
    args = _parser().parse_args(
        [
            "loadtest",
            "--url",
            url(sim),
            "--model",
            CHAT,
            "--rpm",
            "1200",
            "--requests",
            "8",
            "--api-key-env",
            "LOADTEST_KEY",
            "--out",
            str(out),
            "--plot",
            str(png),
            "--quiet",
            "--task-id-prefix",
            "eval",
        ]
    )
    assert await args.func(args) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    requests = [x for x in lines if x["type"] == "request"]
    summary = lines[-1]
    assert len(requests) == 8 and summary["type"] == "summary"
    for key in ("status", "ttft_ms", "e2e_ms", "prompt_tokens", "completion_tokens", "cost", "task_id"):
        assert key in requests[0]
    assert requests[0]["task_id"].startswith("eval-")
    for key in ("requests", "ok", "rpm", "tpm"):
        assert key in summary
    assert set(summary["e2e_ms"]) >= {"min", "mean", "p50", "p90", "p95", "p99", "max"}
    assert png.stat().st_size > 1000
    shown = capsys.readouterr()
    assert secret not in out.read_text() and secret not in shown.out and secret not in shown.err
    # And the saved run renders again.
    again = _parser().parse_args(["loadtest", "report", str(out)])
    assert await again.func(again) == 0
    assert "open loop" in capsys.readouterr().out


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(LoadConfigError, match="shape"):
        LoadConfig(targets=(Target("t", url="http://127.0.0.1:1/v1/chat/completions"),), duration_s=1)
    with pytest.raises(LoadConfigError, match="target"):
        Target("t")
    with pytest.raises(LoadConfigError, match="shape: give only one"):
        LoadConfig(targets=(Target("t", grpc="127.0.0.1:1"),), concurrency=2, rate_per_s=3, requests=1)


async def test_reasoning_is_timed_and_counted_apart_from_the_answer(sim: Sim) -> None:
    await sim.set(reasoning_tokens=20, ttft_s=0.05, tokens_per_s=200)
    records, summaries = await run(cfg(sim, requests=2, concurrency=1, stream=True), progress=False)
    for r in records:
        assert r.reasoning and r.first_reasoning_ms is not None and r.ttft_ms is not None
        assert r.first_reasoning_ms < r.ttft_ms - 50  # 20 reasoning tokens at 200/s come first
        assert r.reasoning_tokens == 20 and not r.estimated and r.chunks > 5
    assert summaries[0].statuses == {"200": 2}


async def test_a_repeated_run_measures_the_provider_not_the_cache_unless_asked(sim: Sim) -> None:
    from translane.config import CacheConfig
    from translane.server import running_server

    from ..conftest import server_config

    config = dataclasses.replace(server_config(sim), cache=CacheConfig(kind="memory"))
    async with running_server(config) as running:
        target = (Target("svc", grpc=f"127.0.0.1:{running.port}"),)
        same = {"requests": 6, "concurrency": 2, "prompt_tokens": 12, "seed": 7}
        for run_id in ("first", "second"):
            _, summaries = await run(LoadConfig(targets=target, run_id=run_id, **same), progress=False)
            assert summaries[0].ok == 6 and summaries[0].cache_hit_share == 0.0
        provider = (await sim.stats())["models"]
        assert sum(m["admitted"] for m in provider.values()) == 12
        # Measuring the cache on purpose: the same prompts twice, the second run served from the cache.
        for run_id in ("third", "fourth"):
            _, summaries = await run(LoadConfig(targets=target, run_id=run_id, cache=True, **same), progress=False)
        assert summaries[0].cache_hit_share == 1.0


def test_targets_are_named_by_where_they_are() -> None:
    from translane.tools.loadtest._cli import build

    args = _parser().parse_args(
        [
            "loadtest",
            "--url",
            "http://127.0.0.1:8000/v1/chat/completions",
            "--compare",
            "http://127.0.0.1:8912/api/v3/chat/completions",
            "--rate",
            "1",
            "--requests",
            "1",
        ]
    )
    names = [t.name for t in build(args).targets]
    assert names == ["127.0.0.1:8000/v1/chat/completions", "127.0.0.1:8912/api/v3/chat/completions"]
    args = _parser().parse_args(["loadtest", "--grpc", "127.0.0.1:50051", "--concurrency", "1", "--requests", "1"])
    assert [t.name for t in build(args).targets] == ["grpc 127.0.0.1:50051"]


async def test_whole_answers_have_no_ttft_or_tpot(server: RunningServer, sim: Sim) -> None:
    """Unary gRPC and HTTP without --stream: TTFT, ITL and TPOT do not apply (null, n/a), not e2e and ~0 ms."""
    from translane.tools.loadtest._report import table

    grpc_cfg = LoadConfig(targets=(Target("svc", grpc=f"127.0.0.1:{server.port}"),), requests=4, concurrency=2)
    for config in (grpc_cfg, cfg(sim, requests=4, concurrency=2)):
        records, summaries = await run(config, progress=False)
        assert all(r.ok and r.ttft_ms is None and r.tpot_ms is None and not r.itl_ms for r in records)
        assert all(r.json()["ttft_ms"] is None and r.json()["tpot_ms"] is None for r in records)
        s = summaries[0]
        assert (s.ttft_ms, s.tpot_ms, s.itl_ms) == (None, None, None) and s.e2e_ms is not None
        assert s.json()["ttft_ms"] is None and s.json()["tpot_ms"] is None
        assert " n/a " in table(summaries)
    with pytest.raises(LoadConfigError, match="slo_ttft_ms: needs --stream"):
        cfg(sim, requests=1, concurrency=1, slo_ttft_ms=100)


async def test_a_ladder_takes_its_values_in_the_unit_steps_of_names(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    # --rpm beside --steps was ignored without a word: refused, saying how to ladder in RPM.
    args = _parser().parse_args(["loadtest", "--url", url(sim), "--rpm", "600", "--steps", "1,5", "--requests", "2"])
    assert await args.func(args) == 2
    said = capsys.readouterr().err
    assert "steps: a ladder's values are its shape" in said and "--steps-of rpm --steps 600,1200" in said
    for shape in ({"concurrency": 2}, {"rate_per_s": 1.0}, {"tpm": 1000.0}):
        with pytest.raises(LoadConfigError, match=r"^steps: "):
            cfg(sim, steps=(1.0, 2.0), requests=2, **shape)
    with pytest.raises(LoadConfigError, match="steps_of: names the unit of --steps"):
        cfg(sim, steps_of="rpm", rate_per_s=1.0, requests=2)
    _, summaries = await run(cfg(sim, steps=(600.0, 1200.0), steps_of="rpm", requests=3), progress=False)
    assert [(s.target_rpm, s.concurrency, s.ok) for s in summaries] == [(600.0, 0, 3), (1200.0, 0, 3)]
    _, summaries = await run(cfg(sim, steps=(1.0, 3.0), requests=3), progress=False)
    assert [(s.target_rpm, s.concurrency, s.ok) for s in summaries] == [(0.0, 1, 3), (0.0, 3, 3)]


async def test_compared_targets_are_rated_over_their_own_span(sim: Sim) -> None:
    """A fast and a slow target, the same schedule: each one's RPM over its own first send to last answer."""
    from ..conftest import start_sim

    runner, slow = await start_sim(SimConfig.from_config(load_config(env={}), ttft_s=0.6))
    try:
        both = (Target("fast", url=url(sim)), Target("slow", url=url(slow)))
        records, summaries = await run(
            LoadConfig(targets=both, model=CHAT, rate_per_s=20.0, requests=6), progress=False
        )
        fast, slow_summary = summaries
        mine = [r for r in records if r.target == "fast"]
        span = max(r.end_s for r in mine) - min(r.sent_s for r in mine)
        assert fast.duration_s == pytest.approx(span) and slow_summary.duration_s > fast.duration_s + 0.4
        assert fast.rpm == pytest.approx(6 / span * 60)
        assert fast.rpm > 1.5 * slow_summary.rpm
        # A closed loop sends each target --requests, the same inputs in the same order.
        records, summaries = await run(
            LoadConfig(targets=both, model=CHAT, concurrency=2, requests=4, prompt_tokens_spread=8), progress=False
        )
        assert [s.ok for s in summaries] == [4, 4]
        tokens = {(r.target, r.n): r.prompt_tokens for r in records}
        assert [tokens[("fast", n)] for n in range(4)] == [tokens[("slow", n)] for n in range(4)]
    finally:
        await runner.cleanup()


def _records(target: str, step: int, outcomes: dict[str, int], ttft: bool = False) -> list[Record]:
    """Requests one a tenth of a second apart: `outcomes` of each kind, ok ones 50 ms, failures at 5 s."""
    out: list[Record] = []
    for kind, count in outcomes.items():
        for _ in range(count):
            n = len(out)
            r = Record(target, step, n, f"t-{n}", n / 10, sent_s=n / 10, outcome=kind)
            r.e2e_ms = 50.0 if kind == "ok" else 5000.0
            r.ttft_ms = 20.0 if ttft and kind == "ok" else None
            r.completion_tokens = 10
            out.append(r)
    return out


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_the_plot_draws_every_outcome_with_compared_targets_on_the_same_axes() -> None:
    from translane.tools.loadtest._plot import figure
    from translane.tools.loadtest._records import summarize

    records = _records("a", 0, {"ok": 30, "timeout": 20}, ttft=True)
    records += _records("b", 0, {"ok": 40, "server_error": 5, "rate_limited": 5}, ttft=True)
    summaries = [summarize([r for r in records if r.target == t], t, 0, "open loop", 600.0, stream=True) for t in "ab"]
    fig = figure(records, summaries)
    latency, outcomes = fig.axes[0], fig.axes[1]
    drawn = _lines(outcomes)
    # Every outcome of each target, counted per second on one axes (531 timeouts had been a blank stretch).
    for target, kind, count in (
        ("a", "ok", 30),
        ("a", "timeout", 20),
        ("b", "server_error", 5),
        ("b", "rate_limited", 5),
    ):
        assert sum(drawn[f"{kind} · {target}"].get_ydata()) == count
    assert "offered 10/s" in drawn
    # Latency: both targets' e2e and, streaming, TTFT beside it; each failure a mark at its e2e.
    assert {"e2e p50 · a", "e2e p50 · b", "TTFT p50 · a", "TTFT p50 · b"} <= set(_lines(latency))
    marks = {c.get_label(): len(c.get_offsets()) for c in latency.collections}
    assert marks == {"timeout · a": 20, "rate_limited · b": 5, "server_error · b": 5}
    assert len(fig.axes) == 2  # one step: no ladder row


def test_a_ladder_is_drawn_against_its_concurrency() -> None:
    from translane.tools.loadtest._plot import figure
    from translane.tools.loadtest._records import summarize

    records: list[Record] = []
    summaries = []
    for step, concurrency in enumerate((1, 4, 16)):
        mine = _records("a", step, {"ok": 10 * concurrency, "timeout": step})
        records += mine
        summaries.append(summarize(mine, "a", step, f"closed loop, {concurrency} in flight", concurrency=concurrency))
    fig = figure(records, summaries)
    throughput, latency = fig.axes[0], fig.axes[1]
    rpm = _lines(throughput)["RPM"]
    assert list(rpm.get_xdata()) == [1, 4, 16]
    assert list(rpm.get_ydata()) == pytest.approx([s.rpm for s in summaries])
    assert "TPM" in {line.get_label() for ax in fig.axes for line in ax.get_lines()}  # on the twin axis
    assert list(_lines(latency)["e2e p99"].get_xdata()) == [1, 4, 16]
    assert "TTFT p50" not in _lines(latency)  # not streamed
    assert throughput.get_xlabel().startswith("concurrency")
    # Then each step's own latency and outcomes panels.
    assert len([ax for ax in fig.axes if ax.get_title().endswith("outcomes")]) == 3


async def test_the_progress_bar_ends_full(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """3 a second for 2.5 s sends 8 (at 0 .. 2.33 s), planned as 7; a closed-loop comparison planned twice what it
    sent. The bar ends at what was sent, of as many."""
    records, _ = await run(cfg(sim, rate_per_s=3.0, duration_s=2.5), progress=True)
    assert len(records) == 8 and re.search(r"\b8/8\b", capsys.readouterr().err)
    both = (Target("a", url=url(sim)), Target("b", url=url(sim)))
    records, _ = await run(LoadConfig(targets=both, model=CHAT, concurrency=2, requests=3), progress=True)
    assert len(records) == 6 and re.search(r"\b6/6\b", capsys.readouterr().err)
