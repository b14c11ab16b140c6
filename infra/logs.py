"""Structured logging (structlog) for every Conveyor process.

One configuration for the API, the workers and the CLI: structlog events and
stdlib records (Celery's, uvicorn's, botocore's) go through the same processors
and come out as JSON lines or as readable console lines. Neither format shows a
traceback's frame locals (a job's payload would leak into the log).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Literal

import structlog

Format = Literal["auto", "console", "json"]


def configure_logging(fmt: Format = "auto", level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr in ``fmt``; idempotent."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = sys.stderr.isatty()
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=_exception_formatter(colors=colors)
        )
    structlog.configure(
        # filter_by_level first: an event below the level (a job's DEBUG lines) costs a
        # level check, not the whole chain before the standard library drops it.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries: their debug output is noise next to job events.
    for name in ("botocore", "boto3", "urllib3", "kombu", "amqp", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _exception_formatter(*, colors: bool) -> structlog.typing.ExceptionRenderer:
    """Tracebacks without frame locals.

    structlog's default console formatter (rich, or better-exceptions) prints every
    frame's local variables: a failing job's payload, API keys and e-mail addresses
    would land in the log, several times per failure. JSON logs use the standard
    library's traceback text, which never shows locals. Without colours (a log file),
    the traceback has no escape sequences either.
    """
    if importlib.util.find_spec("rich") is not None:
        return structlog.dev.RichTracebackFormatter(
            show_locals=False, color_system="truecolor" if colors else None
        )
    return structlog.dev.plain_traceback


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
