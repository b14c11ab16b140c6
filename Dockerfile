# One image for every role: `conveyor api`, `conveyor worker --pool NAME`, `conveyor infra apply`, …
# Builds a wheel, installs it into a virtual environment pinned by constraints.txt (as the README
# does), and copies only that environment into a slim runtime stage that runs as non-root.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY setup.cfg pyproject.toml constraints.txt README.md ./
COPY conveyor ./conveyor
COPY infra ./infra
COPY producers ./producers
COPY workers ./workers
COPY ops ./ops
# The emulator extra lets `conveyor up` and `conveyor emulator` run self-contained; drop it
# (here and in tests/unit/test_docker.py, which installs the wheel the same way) for AWS-only images.
RUN python -m pip wheel --no-deps -w /wheels . \
 && python -m venv /opt/conveyor \
 && set -- /wheels/conveyor-*.whl \
 && /opt/conveyor/bin/pip install -c constraints.txt "$1[emulator]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 conveyor
COPY --from=build /opt/conveyor /opt/conveyor
WORKDIR /app
# The sample topology and its handlers: not part of the wheel. Handler modules are imported
# from the directory of queues.yaml, so a user's image replaces these two lines with its own.
COPY queues.yaml ./
COPY sample_jobs ./sample_jobs
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONVEYOR_LOG_FORMAT=json \
    CONVEYOR_QUEUES_FILE=/app/queues.yaml \
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
