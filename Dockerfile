# syntax=docker/dockerfile:1
# The Keel image: `keel serve` by default; the same image runs `keel migrate` and `keel worker`.
#   docker build -t keel .
#   docker run --rm -p 127.0.0.1:8000:8000 -e KEEL_SECRET_KEY=... -e KEEL_DATABASE_URL=... -e KEEL_SMTP_HOST=... keel
# Built the way uv's Docker guide recommends: dependencies from uv.lock in their own cached layer,
# then the project, installed non-editable so the final stage needs only the virtual environment.

# The Python CI tests on; builder and final stage must match (the venv points at this interpreter).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-trixie AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /app

# Dependencies only: this layer is rebuilt when uv.lock changes, not when the code does.
# --locked fails the build if uv.lock is out of date with pyproject.toml.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project --no-editable

COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable


FROM python:${PYTHON_VERSION}-slim-trixie
# A fixed numeric id, so `runAsNonRoot` checks (Kubernetes) can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 keel \
    && useradd --system --uid 10001 --gid keel --home-dir /var/lib/keel --no-create-home \
       --shell /usr/sbin/nologin keel \
    && install -d -o keel -g keel -m 0750 /var/lib/keel

# Owned by root and so read-only to the service; bytecode is compiled already.
COPY --from=builder /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    KEEL_ENVIRONMENT=production \
    KEEL_DATA_DIR=/var/lib/keel
WORKDIR /app
USER 10001:10001

EXPOSE 8000
# Liveness only: /ready (database, Redis, broker) is for load balancers, so an outage of a shared
# service does not mark every container unhealthy. Python, because slim images have no curl.
# Containers that run `worker` or `migrate` override this (see compose.yaml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# `keel serve` applies pending migrations before it listens (a no-op once `keel migrate` ran).
ENTRYPOINT ["keel"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
