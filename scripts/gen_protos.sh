#!/usr/bin/env bash
# Regenerates the committed protobuf code. Pinned by grpcio-tools in pyproject.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: service)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-service}"
py="${PYTHON:-python}"
# The mypy-protobuf plugins sit beside that interpreter.
PATH="$(dirname "$("$py" -c 'import sys; print(sys.executable)')"):$PATH"
export PATH
"$py" -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  --mypy_grpc_out="$out" \
  protos/translane/v1/translate.proto
