# One image for every role: `conveyor api`, `conveyor worker --pool NAME`, `conveyor infra apply`, …
# Installs the package the way the README does (pinned by constraints.txt), runs as non-root.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY setup.cfg pyproject.toml constraints.txt README.md ./
COPY conveyor ./conveyor
COPY infra ./infra
COPY producers ./producers
COPY workers ./workers
COPY sample_jobs ./sample_jobs
# The emulator extra lets `conveyor up` run self-contained; drop it for AWS-only images.
RUN python -m venv /opt/conveyor \
 && /opt/conveyor/bin/pip install -c constraints.txt ".[emulator]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 conveyor
COPY --from=build /opt/conveyor /opt/conveyor
WORKDIR /app
COPY queues.yaml ./
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CONVEYOR_LOG_FORMAT=json \
    CONVEYOR_QUEUES_FILE=/app/queues.yaml
USER 10001
EXPOSE 8000
ENTRYPOINT ["conveyor"]
CMD ["--help"]
