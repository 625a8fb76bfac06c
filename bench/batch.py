"""A batch job at the slow model's limits: as fast as RPM/TPM allow, never past them, never paying twice.

Starts the simulated provider and `translane serve` (governor and provider on the same
sliding window, `--window-s`, default 60 s, at the slow model's rate: RPM 5,000 and TPM
500,000 per minute, scaled with the window) as processes on loopback; this process runs `translane batch run`'s
runner. Three runs on the same service:

  unique     N distinct sentences
  repeated   N lines, 30% of them repeating earlier ones (a fresh set of sentences)
  rerun      the repeated job again, output kept: everything is already answered

It prints each run's wall time against the least time the limits allow (requests / RPM
per second), the provider's calls and 429s, and the cache's share.

    python bench/batch.py [--lines 5000] [--window-s 60]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SLOW_RPM as RPM
from _common import SLOW_TPM as TPM
from _common import free_port, machine, process, sim_stats, slow_models
from translane.tools.batch import BatchSettings, run_batch


def job(path: Path, lines: int, prefix: str, repeat_share: float, seed: int) -> int:
    """Write the job; return how many distinct sentences it holds."""
    rng = random.Random(seed)
    sentences: list[str] = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            if sentences and rng.random() < repeat_share:
                text = rng.choice(sentences)
            else:
                text = f"{prefix} sentence number {i} keeps the provider busy at its limit."
                sentences.append(text)
            f.write(json.dumps({"custom_id": f"{prefix}-{i}", "text": text, "target_language": "zh"}) + "\n")
    return len(sentences)


async def main_async(args: argparse.Namespace, grpc_port: int, sim_port: int, tmp: Path) -> None:
    floor_s = args.lines / (RPM / 60)
    runs = [("unique", "u", 0.0, False), ("repeated", "r", 0.3, False), ("rerun", "r", 0.3, True)]
    unique = 0
    for name, prefix, share, rerun in runs:
        source, out = tmp / f"{prefix}.jsonl", tmp / f"{prefix}.out.jsonl"
        if not rerun:
            unique = job(source, args.lines, prefix, share, seed=1)
        before = sim_stats(sim_port)
        s = BatchSettings(f"127.0.0.1:{grpc_port}", str(source), str(out), progress=False)
        summary = await run_batch(s)
        after = sim_stats(sim_port)
        calls = after["admitted"] - before["admitted"]
        print(f"\n[{name}] {args.lines} lines, {unique} distinct sentences")
        print(f"  {summary.text()}")
        print(
            f"  provider calls {calls:.0f} (429s {after['rate_limited'] - before['rate_limited']:.0f}); "
            f"wall {summary.wall_s:.1f}s"
            + (f" = {summary.wall_s / (calls / (RPM / 60)):.3f}x the least the RPM allows for them" if calls else "")
        )
        if name == "unique":
            print(f"  least time the limits allow for {args.lines} calls: {floor_s:.1f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=5000)
    p.add_argument("--window-s", type=float, default=60.0, help="shorter windows scale RPM/TPM down with them")
    args = p.parse_args()
    print(
        f"bench/batch.py on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}: RPM {RPM}, TPM {TPM}, "
        f"provider and governor window {args.window_s:g}s"
    )
    scale = args.window_s / 60
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        models = tmp / "models.toml"
        # Per window: the same rate per second as the real per-minute limits.
        models.write_text(slow_models(args.window_s, round(RPM * scale), round(TPM * scale), tmp / "cache.sqlite3"))
        sim_port, grpc_port = free_port(), free_port()
        common = ["--models-file", str(models)]
        sim = [*common, "sim", "--port", str(sim_port), "--window-s", str(args.window_s), "--ttft-s", "0.3"]
        serve = [*common, "serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
        with process(sim, sim_port), process(serve, grpc_port):
            uvloop.run(main_async(args, grpc_port, sim_port, tmp))


if __name__ == "__main__":
    main()
