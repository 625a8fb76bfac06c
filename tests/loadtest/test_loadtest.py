"""translane loadtest against the simulated provider (and the service) on loopback: shapes, measures, outputs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
from translane.cli import _parser
from translane.config import load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tokens import count_tokens
from translane.tools.loadtest import LoadConfig, Target, run
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
        cfg(sim, steps=(20.0, 40.0, 80.0), rate_per_s=1.0, duration_s=0.5, stop_error_share=0.5), progress=False
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
