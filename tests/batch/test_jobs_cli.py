"""translane batch submit / status / wait / cancel / download / list against the real service and simulated
provider: a job's download is what `batch run` writes for the same input; cancel; unknown ids; a service
not reached."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
from openai.types.chat import ChatCompletion
from translane.cli import _parser
from translane.server import RunningServer
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim
from ..helpers.eventually import eventually
from ..helpers.processes import clean_env, free_port, translane
from .test_batch import openai_line, outputs, write


async def cli(*argv: str) -> int:
    """Run `translane ARGV` in this loop (the server under test runs in it too)."""
    args = _parser().parse_args(list(argv))
    code: int = await args.func(args)
    return code


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


def comparable(line: dict[str, Any]) -> dict[str, Any]:
    """An output line without what differs from run to run: ids, timestamps, timings."""
    line = json.loads(json.dumps(line))
    line.pop("id")
    response = line["response"]
    response.pop("request_id", None)
    body = response["body"]
    for key in ("id", "created"):
        body.pop(key, None)
    for usage in (body.get("usage"),):
        if isinstance(usage, dict):
            usage.pop("timing", None)
    return dict(line)


async def submit(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str
) -> tuple[str, str]:
    """The job's name as submit printed it, and what it said on stderr."""
    jobs = str(tmp_path / "jobs")
    code = await cli(
        "batch", "submit", str(tmp_path / "in.jsonl"), "--target", target(server), "--jobs-dir", jobs, *flags
    )
    said = capsys.readouterr()
    assert code == 0 and said.out.startswith("operations/"), said
    return said.out.strip(), said.err


async def test_submit_wait_download_answers_as_batch_run_does(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "in.jsonl",
        [
            openai_line("a", "Hello\n\n%%\n\nWorld"),
            {"custom_id": "b", "text": "Good night.", "target_language": "ja"},
            {"custom_id": "c", "segments": ["One.", "Two."], "target_language": "fr", "source_language": "en"},
            "this is not json",
            {"custom_id": "d"},
            {"custom_id": "e", "text": "x", "target_language": "klingon"},
            {"custom_id": "b", "text": "a duplicate, skipped as batch run skips it"},
            {"custom_id": "f", "text": "no target: --to's"},
        ],
    )
    name, said = await submit(server, tmp_path, capsys, "--to", "zh", "--window", "1h", "--label", "team=docs")
    assert "not sent: line-4: line 4 is not JSON" in said and "not sent: d: " in said
    assert "1 duplicate custom_ids skipped" in said and "5 lines sent, 2 refused" in said

    assert await cli("batch", "wait", name, "--target", target(server), "--quiet", "--timeout", "30") == 0
    assert "SUCCEEDED" in capsys.readouterr().out
    assert await cli("batch", "status", name.removeprefix("operations/"), "--target", target(server)) == 0
    status = capsys.readouterr().out
    assert status.startswith(f"{name}: SUCCEEDED, 4 done, 1 failed of 5;") and "team=docs" in status
    assert "window 1h" in status

    got = tmp_path / "job.jsonl"
    assert (
        await cli(
            "batch", "download", name, "-o", str(got), "--target", target(server), "--jobs-dir", str(tmp_path / "jobs")
        )
        == 0
    )
    ran = tmp_path / "run.jsonl"
    flags = ["-o", str(ran), "--target", target(server), "--to", "zh", "--quiet"]
    assert await cli("batch", "run", str(tmp_path / "in.jsonl"), *flags) == 1  # some lines failed
    job, run = outputs(got), outputs(ran)
    assert list(job) == ["a", "b", "c", "line-4", "d", "e", "f"]  # input order, every custom_id once
    assert set(job) == set(run)
    for cid in job:
        assert comparable(job[cid]) == comparable(run[cid]), cid
    # The chat form answers as a chat.completion the OpenAI SDK reads.
    body = ChatCompletion.model_validate(job["a"]["response"]["body"])
    assert body.choices[0].message.content == "[sim auto->de] Hello\n\n%%\n\n[sim auto->de] World"

    assert await cli("batch", "list", "--target", target(server)) == 0
    assert capsys.readouterr().out.startswith(f"{name}: SUCCEEDED")


async def _files_left(server: RunningServer) -> list[str]:
    async with grpc.aio.insecure_channel(target(server)) as channel:
        listed = await pb_grpc.TranslatorStub(channel).ListFiles(pb.ListFilesRequest(), timeout=10)
    return [f.id for f in listed.files]


async def test_a_job_sent_as_a_file_downloads_as_the_same_job_sent_inline(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "in.jsonl",
        [
            openai_line("a", "Hello\n\n%%\n\nWorld"),
            {"custom_id": "b", "text": "Good night.", "target_language": "ja"},
            "this is not json",
            {"custom_id": "e", "text": "x", "target_language": "klingon"},
            {"custom_id": "f", "text": "no target: --to's"},
        ],
    )
    downloads = {}
    for upload in ("always", "never"):
        name, said = await submit(server, tmp_path, capsys, "--to", "zh", "--upload", upload)
        sent_as_file = "4 lines sent as a file (" in said and " bytes uploaded as file-" in said
        assert sent_as_file == (upload == "always"), said
        assert await cli("batch", "wait", name, "--target", target(server), "--quiet", "--timeout", "30") == 0
        got = tmp_path / f"{upload}.jsonl"
        jobs = str(tmp_path / "jobs")
        assert await cli("batch", "download", name, "-o", str(got), "--target", target(server), "--jobs-dir", jobs) == 0
        downloads[upload] = {cid: comparable(line) for cid, line in outputs(got).items()}
        capsys.readouterr()
    assert list(downloads["always"]) == ["a", "b", "line-3", "e", "f"]
    assert downloads["always"] == downloads["never"]
    # The file went once the job had taken its copy.
    assert await _files_left(server) == []


async def test_a_50000_line_job_of_long_lines_is_submitted_as_one_file(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 50,000 lines of about 700 characters: about 36 MB of requests, past the server's 32 MiB message bound (the
    # same lines inline are refused RESOURCE_EXHAUSTED), sent as a file without a word from the user.
    filler = "x" * 680
    write(tmp_path / "in.jsonl", [{"custom_id": f"x{i}", "text": f"line {i} {filler}"} for i in range(50_000)])
    name, said = await submit(server, tmp_path, capsys, "--to", "zh", "--timeout", "300")
    assert "50000 lines sent as a file (" in said and ", 0 refused" in said, said
    assert await cli("batch", "status", name, "--target", target(server)) == 0
    assert " of 50000;" in capsys.readouterr().out
    # Cheap: the job stops here; its record is what download would read.
    assert await cli("batch", "cancel", name, "--target", target(server)) == 0
    assert capsys.readouterr().out.startswith(f"{name}: CANCELLED")
    assert await _files_left(server) == []


async def test_cancel_stops_a_job_and_wait_says_why(
    server: RunningServer, sim: Sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slow enough to see it running; short, as the lines in flight at the sim outlive the cancel.
    await sim.set(ttft_s=5.0)
    write(tmp_path / "in.jsonl", [{"custom_id": f"x{i}", "text": f"line {i}"} for i in range(3)])
    name, _ = await submit(server, tmp_path, capsys, "--to", "zh")
    assert await cli("batch", "status", name, "--target", target(server)) == 0
    assert capsys.readouterr().out.startswith(f"{name}: RUNNING, 0 done, 0 failed of 3;")

    assert await cli("batch", "cancel", name, "--target", target(server)) == 0
    assert capsys.readouterr().out.startswith(f"{name}: CANCELLED")
    assert await cli("batch", "wait", name, "--target", target(server), "--quiet") == 1
    err = capsys.readouterr().err
    assert f"{name}: CANCELLED: cancelled: 0 of 3 lines answered" in err
    out = tmp_path / "out.jsonl"
    jobs = str(tmp_path / "jobs")
    # Nothing was answered before the cancel: every line says it never ran.
    assert await cli("batch", "download", name, "-o", str(out), "--target", target(server), "--jobs-dir", jobs) == 0
    assert "3 lines never ran" in capsys.readouterr().err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["custom_id"], x["error"]["code"]) for x in lines] == [(f"x{i}", "batch_cancelled") for i in range(3)]


async def test_a_cancelled_jobs_download_keeps_the_lines_answered_before_it(
    server: RunningServer, sim: Sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await sim.set(ttft_s=0.2)  # 64 lines, 16 at a time: the cancel lands after the first round
    write(tmp_path / "in.jsonl", [{"custom_id": f"x{i}", "text": f"line {i}"} for i in range(64)])
    name, _ = await submit(server, tmp_path, capsys, "--to", "zh")

    async def some_done() -> bool:
        assert await cli("batch", "status", name, "--target", target(server)) == 0
        return not capsys.readouterr().out.startswith(f"{name}: RUNNING, 0 done")

    await eventually(some_done, 10.0, "a line answered")
    assert await cli("batch", "cancel", name, "--target", target(server)) == 0
    capsys.readouterr()
    out = tmp_path / "out.jsonl"
    jobs = str(tmp_path / "jobs")
    assert await cli("batch", "download", name, "-o", str(out), "--target", target(server), "--jobs-dir", jobs) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"x{i}" for i in range(64)]
    answered = [x for x in lines if x["error"] is None]
    never = [x for x in lines if x["error"] is not None]
    assert answered and never and {x["error"]["code"] for x in never} == {"batch_cancelled"}
    assert all(x["response"]["status_code"] == 200 for x in answered)
    assert all(f"line {x['custom_id'][1:]}" in json.dumps(x["response"]["body"]) for x in answered)
    assert f"{len(never)} lines never ran" in capsys.readouterr().err


async def test_wait_gives_up_after_its_timeout_and_download_waits_for_the_end(
    server: RunningServer, sim: Sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slow enough to see it running; short, as the lines in flight at the sim outlive the cancel.
    await sim.set(ttft_s=5.0)
    write(tmp_path / "in.jsonl", [{"custom_id": "x", "text": "line"}])
    name, _ = await submit(server, tmp_path, capsys, "--to", "zh")
    assert await cli("batch", "wait", name, "--target", target(server), "--quiet", "--timeout", "0.5") == 3
    assert "still running after 0.5s" in capsys.readouterr().err
    out = tmp_path / "out.jsonl"
    jobs = str(tmp_path / "jobs")
    assert await cli("batch", "download", name, "-o", str(out), "--target", target(server), "--jobs-dir", jobs) == 1
    assert "still running" in capsys.readouterr().err
    await cli("batch", "cancel", name, "--target", target(server))


@pytest.mark.parametrize("action", ["status", "wait", "cancel"])
async def test_an_unknown_job_is_no_such_job(
    server: RunningServer, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("batch", action, "nope", "--target", target(server)) == 1
    assert capsys.readouterr().err.strip() == "translane batch: no such job: operations/nope"


async def test_download_without_the_local_record_says_where_it_looks(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli(
        "batch", "download", "abc", "-o", str(tmp_path / "o"), "--target", target(server), "--jobs-dir", str(tmp_path)
    )
    assert code == 1
    assert "no local record of operations/abc" in capsys.readouterr().err


async def test_a_service_not_reached_is_one_line_with_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "in.jsonl", [{"custom_id": "x", "text": "line", "target_language": "zh"}])
    away = f"127.0.0.1:{free_port()}"
    assert await cli("batch", "status", "abc", "--target", away) == 1
    err = capsys.readouterr().err
    assert err.startswith("translane: UNAVAILABLE") and f"is the service running at {away}" in err
    code = await cli("batch", "submit", str(tmp_path / "in.jsonl"), "--target", away, "--timeout", "3")
    assert code == 1 and "translane: UNAVAILABLE" in capsys.readouterr().err


async def test_the_record_is_kept_where_submit_ran_and_download_finds_it_there(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.jsonl", [{"custom_id": "x", "text": "Hello", "target_language": "ja"}])
    assert await cli("batch", "submit", "in.jsonl", "--target", target(server), "--label", "no-equals") == 2
    assert "--label 'no-equals': expected KEY=VALUE" in capsys.readouterr().err
    assert await cli("batch", "submit", "in.jsonl", "--target", target(server)) == 0
    name = capsys.readouterr().out.strip()
    assert (tmp_path / ".translane-jobs" / f"{name.removeprefix('operations/')}.jsonl").exists()
    assert await cli("batch", "wait", name, "--target", target(server), "--quiet") == 0
    assert await cli("batch", "download", name, "-o", "out.jsonl", "--target", target(server)) == 0
    out = outputs(tmp_path / "out.jsonl")
    assert [t["text"] for t in out["x"]["response"]["body"]["translations"]] == ["[sim auto->ja] Hello"]


async def test_wait_rides_through_a_restart_of_the_service(
    sim: Sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The job outlives its server (jobs.sqlite3), and so does `wait`: it calls again until the service is back."""
    port = free_port()
    env = clean_env(TRANSLANE_CACHE="sqlite", TRANSLANE_DATA_DIR=str(tmp_path / "data"))
    args = ["serve", "--port", str(port), "--upstream-url", sim.url]
    here = f"127.0.0.1:{port}"
    await sim.set(ttft_s=0.3)
    write(tmp_path / "in.jsonl", [{"custom_id": f"x{i}", "text": f"line {i}"} for i in range(80)])
    with translane(args, port, tmp_path / "serve1.log", env) as first:
        jobs = str(tmp_path / "jobs")
        assert (
            await cli("batch", "submit", str(tmp_path / "in.jsonl"), "--target", here, "--to", "zh", "--jobs-dir", jobs)
            == 0
        )
        name = capsys.readouterr().out.strip()
        waiting = asyncio.create_task(cli("batch", "wait", name, "--target", here, "--quiet", "--timeout", "90"))

        async def some_done() -> bool:
            assert not waiting.done()
            assert await cli("batch", "status", name, "--target", here) == 0
            return ", 0 done," not in capsys.readouterr().out

        await eventually(some_done, 20.0, "a line answered before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with translane(args, port, tmp_path / "serve2.log", env):
        assert await asyncio.wait_for(waiting, 90) == 0
        assert f"{name}: SUCCEEDED, 80 done, 0 failed of 80;" in capsys.readouterr().out
