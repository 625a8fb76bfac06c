"""translane file: leak repairs show their own progress, are kept in the state (a resumed run does not pay for them
again), and `repair_attempts` says how many there are."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from rich.console import Console
from translane.config import load_config
from translane.server import RunningServer
from translane.sim import SimConfig
from translane.tools.files._runner import FileSettings, _Bars, state_path, translate_files

from ..conftest import Sim
from ..helpers.eventually import eventually


@pytest.fixture
def sim_config() -> SimConfig:
    """The simulator as users run it: answers in pseudo-words of the target language."""
    return SimConfig.from_config(load_config(env={}))


def settings(server: RunningServer, tmp_path: Path, **kw: object) -> FileSettings:
    return FileSettings(f"127.0.0.1:{server.port}", "de", review=str(tmp_path / "review.json"), **kw)  # type: ignore[arg-type]


async def admitted(sim: Sim) -> int:
    return int(sum(m["admitted"] for m in (await sim.stats())["models"].values()))


def story(tmp_path: Path, paragraphs: int) -> Path:
    src = tmp_path / "story.txt"
    lines = [
        f"Paragraph {i} tells how the old keeper trimmed the lamp before the storm came." for i in range(paragraphs)
    ]
    src.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return src


async def service_idle(server: RunningServer) -> None:
    """A call the service had sent when a run was stopped may reach the provider a moment later."""
    lanes = server.engine.lanes.values()
    await eventually(lambda: all(lane.in_flight == 0 for lane in lanes), 5.0, "the service's calls ended")


async def test_a_run_stopped_during_repairs_resumes_them_without_paying_again(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    # Every answer comes back untranslated: each segment is a leak, asked for again twice.
    await sim.set(untranslated_rate=1.0, ttft_s=0.05)
    src = story(tmp_path, 12)
    s = settings(server, tmp_path, batch_size=1, max_in_flight=1, repair_attempts=2)
    run = asyncio.create_task(translate_files([str(src)], s))
    state = state_path(tmp_path / "story.de.txt")
    try:
        await eventually(lambda: state.exists() and '"repairs": 1' in state.read_text(), 10.0, "repairs under way")
    finally:
        run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await service_idle(server)
    summaries, review = await translate_files([str(src)], s)
    s0 = summaries[0]
    # The leaks were kept: the resumed run sends no segment again, it goes on with the repairs.
    assert s0.sent == 0 and s0.resumed == 12 and s0.leaks_resumed == 12
    assert s0.leaks_left == len(review) == 12
    # 12 first answers and 2 repairs each over both runs; at most the one call in flight at the stop went twice.
    assert 36 <= await admitted(sim) <= 37
    assert {e["reason"] for e in review} == {"identical to the original"}


async def test_a_finished_file_with_leaks_left_is_not_sent_again(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = story(tmp_path, 4)
    s = settings(server, tmp_path, repair_attempts=1)
    first, review = await translate_files([str(src)], s)
    assert first[0].leaks_left == len(review) == 4 and state_path(tmp_path / "story.de.txt").exists()
    calls = await admitted(sim)
    again, review = await translate_files([str(src)], s)
    assert again[0].skipped and len(review) == 4
    assert await admitted(sim) == calls


async def test_repairs_have_a_bar_of_their_own(server: RunningServer, sim: Sim, tmp_path: Path) -> None:
    await sim.set(untranslated_rate=1.0)
    src = story(tmp_path, 6)
    bars = _Bars(True, 1, console=Console(file=io.StringIO(), force_terminal=True))
    await translate_files([str(src)], settings(server, tmp_path, repair_attempts=2), bars=bars)
    tasks = {t.description: t for t in bars.progress.tasks}
    assert set(tasks) == {"all files", "story.txt", "repairs: story.txt"}
    assert tasks["story.txt"].completed == tasks["story.txt"].total == 6
    # Each of the 6 leaks asked for again twice, and the bar shows each as it is done.
    assert tasks["repairs: story.txt"].completed == tasks["repairs: story.txt"].total == 12


async def test_no_repairs_bar_when_nothing_leaks(server: RunningServer, tmp_path: Path) -> None:
    src = story(tmp_path, 3)
    bars = _Bars(True, 1, console=Console(file=io.StringIO(), force_terminal=True))
    summaries, _ = await translate_files([str(src)], settings(server, tmp_path), bars=bars)
    assert summaries[0].leaks_found == 0
    assert [t.description for t in bars.progress.tasks] == ["all files", "story.txt"]


async def test_repair_attempts_is_how_often_a_leak_is_asked_for_again(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = story(tmp_path, 5)
    summaries, review = await translate_files([str(src)], settings(server, tmp_path, repair_attempts=0))
    assert summaries[0].leaks_found == summaries[0].leaks_left == len(review) == 5
    assert await admitted(sim) == 5
    with pytest.raises(ValueError, match="repair_attempts: must be >= 0"):
        FileSettings("127.0.0.1:1", "de", repair_attempts=-1)


async def translane_cli(*args: str) -> tuple[int, str]:
    """`translane ARGS` in a process of its own, as a user runs it; (exit, stderr)."""
    code = f"import sys\nfrom translane.cli import main\nsys.exit(main({list(args)!r}))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, err.decode()


async def test_the_cli_sets_repair_attempts_and_refuses_a_negative_count(
    server: RunningServer, sim: Sim, tmp_path: Path
) -> None:
    await sim.set(untranslated_rate=1.0)
    src = story(tmp_path, 3)
    target = f"127.0.0.1:{server.port}"
    code, err = await translane_cli(
        "file", "translate", str(src), "--to", "de", "--target", target, "--repair-attempts", "-1"
    )
    assert code == 2 and "--repair-attempts: must be >= 0, got -1" in err
    assert await admitted(sim) == 0
    review = str(tmp_path / "review.json")
    code, err = await translane_cli(
        "file", "translate", str(src), "--to", "de", "--target", target, "--repair-attempts", "1", "--review", review
    )
    assert code == 0, err
    assert "leaks 3 found, 0 repaired, 3 left for review" in err
    assert await admitted(sim) == 3 + 3  # sent, then asked for again once
