"""The committed generated code matches what the pinned generator makes from the proto."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_has_not_drifted(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env, cwd=ROOT)
    fresh = tmp_path / "translane" / "v1"
    committed = ROOT / "service" / "translane" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == ["translate_pb2.py", "translate_pb2.pyi", "translate_pb2_grpc.py", "translate_pb2_grpc.pyi"]
    drifted = [n for n in names if not filecmp.cmp(fresh / n, committed / n, shallow=False)]
    assert not drifted, f"regenerate with `make protos`: {drifted} differ from protos/translane/v1/translate.proto"
