"""translane batch run against the real service and simulated provider: formats, bad lines, overload, resume."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from translane.config import CacheConfig, Config, load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tools.batch import BatchSettings, read_done, run_batch

from ..conftest import Sim, server_config, with_lanes
from ..helpers.eventually import eventually
from ..helpers.processes import ROOT

TR = "doubao-seed-translation-250915"


@pytest.fixture
def config(sim: Sim, tmp_path: Path) -> Config:
    cfg = server_config(sim)
    return dataclasses.replace(cfg, cache=CacheConfig(kind="sqlite", path=str(tmp_path / "cache.sqlite3")))


def openai_line(cid: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": TR, "messages": [{"role": "user", "content": f"Translate to German:\n\n{text}"}]},
    }


def write(path: Path, lines: list[Any]) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")


def outputs(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    by_id = {x["custom_id"]: x for x in lines}
    assert len(by_id) == len(lines), "a custom_id was answered twice"
    return by_id


def settings(server: RunningServer, tmp_path: Path, **kw: Any) -> BatchSettings:
    kw.setdefault("progress", False)
    kw.setdefault("default_target_language", "zh")  # as with --to zh
    return BatchSettings(f"127.0.0.1:{server.port}", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), **kw)


async def admitted(sim: Sim) -> int:
    return int(sum(m["admitted"] for m in (await sim.stats())["models"].values()))


async def test_openai_batch_and_the_simple_form_round_trip(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    write(
        tmp_path / "in.jsonl",
        [
            openai_line("a", "Hello\n\n%%\n\nWorld"),
            {"custom_id": "b", "text": "Good night.", "target_language": "ja"},
            {"custom_id": "c", "segments": ["One.", "Two."], "target_language": "fr", "source_language": "en"},
            "this is not json",
            {"custom_id": "d"},
            {"custom_id": "e", "text": "x", "target_language": "klingon"},
        ],
    )
    summary = await run_batch(settings(server, tmp_path))
    out = outputs(tmp_path / "out.jsonl")
    assert set(out) == {"a", "b", "c", "line-4", "d", "e"}
    # The OpenAI form answers as OpenAI's batch output does: a chat.completion the SDK reads.
    body = ChatCompletion.model_validate(out["a"]["response"]["body"])
    assert body.choices[0].message.content == "[sim auto->de] Hello\n\n%%\n\n[sim auto->de] World"
    assert out["a"]["response"]["status_code"] == 200 and out["a"]["error"] is None
    assert out["a"]["response"]["body"]["usage"]["cost"] > 0
    assert [t["text"] for t in out["b"]["response"]["body"]["translations"]] == ["[sim auto->ja] Good night."]
    assert [t["text"] for t in out["c"]["response"]["body"]["translations"]] == [
        "[sim en->fr] One.",
        "[sim en->fr] Two.",
    ]
    for bad in ("line-4", "d", "e"):
        assert out[bad]["response"]["status_code"] == 400 and out[bad]["error"]["message"]
    assert summary.answered == 3 and summary.failed == 3


async def test_openai_lines_follow_the_shim_s_field_rules(server: RunningServer, tmp_path: Path) -> None:
    """A chat line is read as the shim reads a request: `stop` cuts the answer, `n` > 1 is refused."""
    stopped = openai_line("stop", "Hello\n\n%%\n\nWorld")
    stopped["body"]["stop"] = ["%%"]
    many = openai_line("n", "Hello")
    many["body"]["n"] = 2
    write(tmp_path / "in.jsonl", [stopped, many])
    await run_batch(settings(server, tmp_path))
    out = outputs(tmp_path / "out.jsonl")
    body = ChatCompletion.model_validate(out["stop"]["response"]["body"])
    assert (body.choices[0].message.content, body.choices[0].finish_reason) == ("[sim auto->de] Hello\n\n", "stop")
    assert out["n"]["response"]["status_code"] == 400 and out["n"]["error"]["message"].startswith("n: ")


async def test_a_line_whose_target_cannot_be_read_is_an_error_line_not_a_default(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    """A line asking for "Klingon" never comes back in --to's language: an error line says what was not read."""
    klingon = openai_line("k", "Hello")
    klingon["body"]["messages"] = [{"role": "user", "content": "Translate to Klingon:\n\nHello"}]
    wrapped = openai_line("w", "Hello")
    wrapped["body"]["messages"] = [{"role": "user", "content": "Please translate this into German. Hello"}]
    write(tmp_path / "in.jsonl", [klingon, wrapped])
    summary = await run_batch(dataclasses.replace(settings(server, tmp_path), default_target_language="ja"))
    out = outputs(tmp_path / "out.jsonl")
    assert out["k"]["response"]["status_code"] == 400 and "'Klingon'" in out["k"]["error"]["message"]
    assert out["w"]["response"]["status_code"] == 400
    assert "instruction in a form the shim does not know" in out["w"]["error"]["message"]
    assert summary.failed == 2 and await admitted(sim) == 0


async def test_without_to_a_line_that_names_no_target_is_an_error_line(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    write(tmp_path / "in.jsonl", [{"custom_id": "a", "text": "Good night."}, openai_line("b", "Hello")])
    summary = await run_batch(settings(server, tmp_path, default_target_language=""))
    out = outputs(tmp_path / "out.jsonl")
    assert out["a"]["response"]["status_code"] == 400 and "--to" in out["a"]["error"]["message"]
    assert out["b"]["response"]["status_code"] == 200  # its instruction names German
    assert summary.failed == 1 and summary.answered == 1 and await admitted(sim) == 1


async def test_a_rerun_of_a_finished_job_calls_the_provider_not_at_all(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    write(tmp_path / "in.jsonl", [openai_line(f"id-{i}", f"Sentence {i}.") for i in range(20)])
    first = await run_batch(settings(server, tmp_path))
    assert first.answered == 20
    before = await admitted(sim)
    again = await run_batch(settings(server, tmp_path))
    assert again.skipped == 20 and again.answered == 0
    assert await admitted(sim) == before
    assert len(outputs(tmp_path / "out.jsonl")) == 20


async def test_repeated_sentences_are_paid_for_once(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", [{"custom_id": str(i), "text": f"Line {i % 5}."} for i in range(30)])
    summary = await run_batch(settings(server, tmp_path))
    assert summary.answered == 30 and await admitted(sim) == 5
    assert summary.cached_segments == 25


class TestOverload:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = with_lanes(server_config(sim, batch_max_queue_wait_s=0.3), max_concurrency=2, max_queue=4)
        return cfg

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig.from_config(load_config(env={}), ttft_s=0.1, pseudo_translate=0.0)

    async def test_overload_is_waited_out_never_a_failed_line(self, server: RunningServer, tmp_path: Path) -> None:
        write(tmp_path / "in.jsonl", [{"custom_id": str(i), "text": f"Busy line {i}."} for i in range(40)])
        summary = await run_batch(settings(server, tmp_path, max_in_flight=40))
        assert summary.answered == 40 and summary.failed == 0
        assert summary.waits > 0  # the service said "later", and the runner listened
        assert len(outputs(tmp_path / "out.jsonl")) == 40


def test_a_torn_last_line_is_cut_and_answered_again(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"custom_id": "a", "response": {}}\n{"custom_id": "b", "resp', encoding="utf-8")
    done = read_done(str(out))
    assert done.ids == {"a"} and done.torn and done.kept == [b'{"custom_id": "a", "response": {}}\n']


class TestRetryFailedLines:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        models = {n: dataclasses.replace(m, fallbacks=()) for n, m in cfg.models.items()}
        providers = {n: dataclasses.replace(p, max_retries=0) for n, p in cfg.providers.items()}
        return dataclasses.replace(cfg, models=models, providers=providers)

    async def test_a_rerun_tries_failed_lines_again_and_keeps_one_line_per_id(
        self, server: RunningServer, sim: Sim, tmp_path: Path
    ) -> None:
        write(tmp_path / "in.jsonl", [{"custom_id": f"f{i}", "text": f"Flaky line {i}."} for i in range(6)])
        await sim.set(error_rate=1.0)
        first = await run_batch(settings(server, tmp_path, max_attempts=1))
        assert first.failed == 6 and len(outputs(tmp_path / "out.jsonl")) == 6
        await sim.set(error_rate=0.0)
        again = await run_batch(settings(server, tmp_path))
        assert again.answered == 6 and again.skipped == 0
        final = outputs(tmp_path / "out.jsonl")  # asserts one line per custom_id
        assert all(line["error"] is None for line in final.values())


async def test_a_job_killed_mid_run_resumes_with_every_id_exactly_once(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(ttft_s=0.05)
    n = 300
    write(tmp_path / "in.jsonl", [{"custom_id": f"k{i}", "text": f"Killed sentence {i}."} for i in range(n)])
    command = [sys.executable, "-m", "translane.cli", "--log-level", "WARNING", "batch", "run"]
    command += [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--target", f"127.0.0.1:{server.port}"]
    command += ["--quiet", "--max-in-flight", "16", "--to", "zh"]
    env = dict(os.environ, TRANSLANE_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    out = tmp_path / "out.jsonl"
    # Killed mid-run, once a third is written.
    try:
        written = f"{n // 3} answers written"
        await eventually(lambda: out.exists() and out.read_text().count("\n") >= n // 3, 30.0, written)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    partial = read_done(str(out))
    assert 0 < len(partial.ids) < n
    summary = await run_batch(settings(server, tmp_path))
    assert summary.skipped == len(partial.ids) and summary.answered == n - len(partial.ids)
    final = outputs(out)
    assert set(final) == {f"k{i}" for i in range(n)}
    for i in range(n):
        texts = [t["text"] for t in final[f"k{i}"]["response"]["body"]["translations"]]
        assert texts == [f"[sim auto->zh] Killed sentence {i}."]


async def test_bad_lines_are_told_what_is_wrong_in_their_own_form(server: RunningServer, tmp_path: Path) -> None:
    no_body = {"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions"}
    write(
        tmp_path / "in.jsonl",
        [
            no_body,
            {"custom_id": "no-text", "target_language": "de"},
            '{"custom_id": "torn", "text": "Cut o',
            '{"custom_id": "open",',
            '{"custom_id": "a" "text": "x"}',
            '{"custom_id": "b", "text": "x"} {"custom_id": "c"}',
            "[1, 2]",
        ],
    )
    await run_batch(settings(server, tmp_path))
    out = outputs(tmp_path / "out.jsonl")
    said = {cid: line["error"]["message"] for cid, line in out.items()}
    # An OpenAI Batch line is told what its form lacks, not the simple form's fields.
    assert said["no-body"].startswith("body: required for a line with method/url")
    assert said["no-text"].startswith("text or segments: required")
    # Not JSON: the input line named, what is wrong in words; never json's line 2 column 1 of a one-line text.
    assert "line 3 is not whole JSON" in said["line-3"] and "torn" in said["line-3"]
    assert said["line-4"] == said["line-3"].replace("line 3", "line 4")
    assert said["line-5"].startswith("line 5 is not JSON: a comma was expected at character 19")
    assert "line 6 goes on after its JSON object ends" in said["line-6"]
    assert said["line-7"] == "line 7: expected a JSON object, got an array"
    assert not any("column" in message for message in said.values())


async def test_duplicates_are_said_alike_fresh_and_resumed_and_the_bar_ends_full(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[Any] = [{"custom_id": f"d{i}", "text": f"Twice said {i}."} for i in range(5)]
    lines += [{"custom_id": "d1", "text": "Again."}, "not json", {"custom_id": "d3", "text": "Again."}]
    write(tmp_path / "in.jsonl", lines)
    fresh = await run_batch(settings(server, tmp_path, progress=True))
    bar = capsys.readouterr().err
    assert (fresh.answered, fresh.failed, fresh.skipped, fresh.duplicates) == (5, 1, 0, 2)
    assert "2 duplicate custom_ids skipped (d1, d3)" in fresh.text()
    # Every line sent or failed moved the bar: it ends full (it ended short by the duplicates: 201/203).
    assert re.search(r"\b6/6\b", bar), bar
    resumed = await run_batch(settings(server, tmp_path, progress=True))
    bar = capsys.readouterr().err
    # The same lines are duplicates after a resume, in the same words (they were "already done").
    assert (resumed.answered, resumed.failed, resumed.skipped, resumed.duplicates) == (0, 1, 5, 2)
    assert "2 duplicate custom_ids skipped (d1, d3)" in resumed.text()
    assert re.search(r"\b1/1\b", bar), bar
