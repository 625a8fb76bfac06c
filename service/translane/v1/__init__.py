"""Generated protobuf code for translane.v1 (see scripts/gen_protos.sh)."""
