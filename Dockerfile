# Two images from one file:
# - the default (last) target, `production`: every role on AWS — `conveyor api`,
#   `conveyor worker --pool NAME`, `conveyor infra apply`, … — WITHOUT the emulator extra (no moto,
#   Flask, docker SDK, cfn-lint…): `docker build -t conveyor .`
# - `emulator`: the embedded AWS emulator for Docker Compose and local runs, with the extra:
#   `docker build --target emulator -t conveyor-emulator .`
# Each builds the wheel, installs it into a virtual environment pinned by constraints.txt (as the
# README does), and copies only that environment into a slim runtime stage that runs as non-root.
# tests/unit/test_docker.py repeats both installs from the RUN lines below.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY setup.cfg pyproject.toml constraints.txt README.md ./
COPY conveyor ./conveyor
COPY infra ./infra
COPY producers ./producers
COPY workers ./workers
COPY ops ./ops
RUN python -m pip wheel --no-deps -w /wheels . \
 && python -m venv /opt/conveyor \
 && set -- /wheels/conveyor-*.whl \
 && /opt/conveyor/bin/pip install -c constraints.txt "$1"

FROM build AS build-emulator
RUN python -m venv /opt/emulator \
 && set -- /wheels/conveyor-*.whl \
 && /opt/emulator/bin/pip install -c constraints.txt "$1[emulator]"

FROM python:3.11-slim AS emulator
RUN useradd --create-home --uid 10001 conveyor
# The virtual environment is copied to the path it was created at: its scripts name it.
COPY --from=build-emulator /opt/emulator /opt/emulator
ENV PATH=/opt/emulator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 5000), timeout=3).close()"]
ENTRYPOINT ["conveyor"]
# In a container the emulator must listen beyond loopback for the other containers.
CMD ["emulator", "--host", "0.0.0.0", "--port", "5000"]

FROM python:3.11-slim AS production
RUN useradd --create-home --uid 10001 conveyor
COPY --from=build /opt/conveyor /opt/conveyor
WORKDIR /app
# The sample topology and its handlers: not part of the wheel. Handler modules are imported
# from the directory of queues.yaml, so a user's image replaces these two lines with its own.
COPY queues.yaml ./
COPY sample_jobs ./sample_jobs
# CONVEYOR_WORKER_HEALTH_HOST: a worker's /healthz (--health-port) listens on every interface, so
# that probes from outside the container (Kubernetes, `docker run -p`) reach it; the ECS task
# definition sets it back to 127.0.0.1, its health check runs inside the container.
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONVEYOR_LOG_FORMAT=json \
    CONVEYOR_QUEUES_FILE=/app/queues.yaml \
    CONVEYOR_WORKER_HEALTH_HOST=0.0.0.0 \
    CONVEYOR_HEALTHCHECK_URL=""
USER 10001
EXPOSE 8000
# One image, several roles: the check probes CONVEYOR_HEALTHCHECK_URL when it is set
# (the API: http://127.0.0.1:8000/healthz; a worker started with --health-port 8001:
# http://127.0.0.1:8001/healthz) and passes when it is empty (one-shot CLI commands).
# Standard library only, so it does not import conveyor. ECS and Kubernetes ignore it and
# use their own probes (see `conveyor infra export`).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as r; u = os.environ.get('CONVEYOR_HEALTHCHECK_URL'); sys.exit(bool(u) and r.urlopen(u, timeout=3).status != 200)"]
ENTRYPOINT ["conveyor"]
CMD ["--help"]
