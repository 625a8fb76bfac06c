# syntax=docker/dockerfile:1.7
#
# One image for every role: `translane serve` (gRPC service, the default),
# `translane shim` (HTTP shim) and `translane sim` (simulated provider).
#
#   docker build -t ghcr.io/translane/translane:0.1.0 .
#   docker run --rm -p 50051:50051 -e TRANSLANE_GRPC_HOST=0.0.0.0 ghcr.io/translane/translane:0.1.0
#
# Needs BuildKit (the default builder since Docker 23): the final stage installs
# the wheels through a bind mount, so no wheel file is left in any layer.

# ---- base: the one Python runtime both stages share ------------------------
# Pin the release's base by digest (python:3.11-slim@sha256:...) when cutting it.
FROM python:3.11-slim AS base

# ---- builder: build the project's wheel and every dependency's wheel ---------
FROM base AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore is an allow-list: only the packaging metadata and the package
# sources reach this context (no .venv, tests, k8s, bench, .git).
COPY . .
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: the slim base plus the installed wheels, nothing else ----------
FROM base AS runtime
LABEL org.opencontainers.image.title="translane" \
      org.opencontainers.image.description="gRPC translation service that runs LLM providers at their rate limits, never past them" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
# --no-index: only what the builder built is installed; no compiler or build
# dependency reaches this stage. pip compiles the .pyc files at install time, so
# the read-only root filesystem the manifests set costs nothing at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels translane \
 && groupadd --gid 10001 translane \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin translane \
 && translane --help > /dev/null
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# gRPC, Prometheus metrics, HTTP shim, simulated provider.
EXPOSE 50051 9464 8000 8900
ENTRYPOINT ["translane"]
CMD ["serve"]
