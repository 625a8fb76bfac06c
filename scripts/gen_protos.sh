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
# googleapis-common-protos ships the Google API protos beside its modules (google/rpc/status.proto...), but
# google/longrunning/operations.proto as operations_proto.proto: offer it under its real name, the one its
# module registers, from a scratch include folder.
common="$("$py" -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))')"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/google/longrunning"
cp "$common/google/longrunning/operations_proto.proto" "$scratch/google/longrunning/operations.proto"
"$py" -m grpc_tools.protoc -Iprotos -I"$scratch" -I"$common" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  --mypy_grpc_out="$out" \
  protos/translane/v1/translate.proto
