"""The settings object: every section read from the environment, its defaults, clear errors.

Also what keeps it the one place that reads the environment: no ``os.environ``
elsewhere in the packages, and no ``CONVEYOR_*`` name in the source it does not know.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.cli import api as cli_api
from conveyor.cli import app
from infra.errors import ConfigError
from infra.settings import (
    OTHER_VARIABLES,
    SECTIONS,
    ApiSettings,
    ClientSettings,
    Settings,
    SettingsError,
    child_environment,
    load_settings,
)
from producers.client import Client
from tests import REPO

PACKAGES = ("infra", "producers", "workers", "ops", "conveyor")
SETTINGS_MODULE = REPO / "infra" / "settings.py"
#: ``CONVEYOR_*`` strings in the source that are not variables.
NOT_VARIABLES = {"CONVEYOR_EMULATOR_ENDPOINT"}  # the emulator's first stdout line, a URL


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONVEYOR_* variable from the outside: each test sets what it reads."""
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


def every_variable() -> dict[str, tuple[str, str]]:
    """Variable name -> (section attribute, field), over every section."""
    return {
        section.env_name(field): (attribute, field)
        for attribute, section in SECTIONS.items()
        for field in section.model_fields
    }


# -- loading each section -----------------------------------------------------------------

LOADED: list[tuple[str, str, Any]] = [
    ("CONVEYOR_QUEUES_FILE", "/etc/conveyor/queues.yaml", Path("/etc/conveyor/queues.yaml")),
    ("CONVEYOR_ENVIRONMENT", "staging", "staging"),
    ("CONVEYOR_LOG_FORMAT", "json", "json"),
    ("CONVEYOR_LOG_LEVEL", "DEBUG", "DEBUG"),
    ("CONVEYOR_ACK_FLUSH_INTERVAL_S", "0.25", 0.25),
    ("CONVEYOR_WORKER_SHUTDOWN_GRACE_S", "5", 5.0),
    ("CONVEYOR_WORKER_LIVENESS_TIMEOUT_S", "60", 60.0),
    ("CONVEYOR_WORKER_HEALTH_PORT", "9100", 9100),
    ("CONVEYOR_WORKER_HEALTH_HOST", "0.0.0.0", "0.0.0.0"),  # noqa: S104
    ("CONVEYOR_METRICS", "emf,prometheus", "emf,prometheus"),
    ("CONVEYOR_METRICS_NAMESPACE", "Acme/Jobs", "Acme/Jobs"),
    ("CONVEYOR_API_AUTH", "none", "none"),
    ("CONVEYOR_API_KEYS_FILE", "/run/secrets/keys.yaml", Path("/run/secrets/keys.yaml")),
    ("CONVEYOR_API_KEYS", "keys: []", "keys: []"),
    ("CONVEYOR_API_RATE_PER_S", "50", 50.0),
    ("CONVEYOR_API_BURST", "100", 100.0),
    ("CONVEYOR_API_IDEMPOTENCY_RETENTION_S", "3600", 3600.0),
    ("CONVEYOR_API_IDEMPOTENCY_LEASE_S", "12", 12.0),
    ("CONVEYOR_API_PUBLISH_THREADS", "16", 16),
    ("CONVEYOR_API_AWS_CONNECT_TIMEOUT_S", "1", 1.0),
    ("CONVEYOR_API_AWS_READ_TIMEOUT_S", "3", 3.0),
    ("CONVEYOR_API_MAX_BODY_BYTES", "65536", 65536),
    ("CONVEYOR_API_BODY_TIMEOUT_S", "2.5", 2.5),
    ("CONVEYOR_API_HEADER_TIMEOUT_S", "4", 4.0),
    ("CONVEYOR_API_MAX_HEADER_BYTES", "8192", 8192),
    ("CONVEYOR_API_MAX_CONCURRENCY", "64", 64),
    ("CONVEYOR_API_KEEP_ALIVE_TIMEOUT_S", "2", 2),
    ("CONVEYOR_API_READY_CACHE_S", "0", 0.0),
    ("CONVEYOR_API_URL", "https://jobs.example.com", "https://jobs.example.com"),
    ("CONVEYOR_CLIENT_API_KEY", "cvy_new", "cvy_new"),
    ("CONVEYOR_AWS_ACCOUNT_ID", "111122223333", "111122223333"),
    ("CONVEYOR_EMULATOR_FIXES", "none", "none"),
    ("CONVEYOR_SCALING_BACKEND", "ecs", "ecs"),
    ("CONVEYOR_STATE_DIR", "/var/lib/conveyor", Path("/var/lib/conveyor")),
    ("CONVEYOR_ECS_CLUSTER", "jobs", "jobs"),
    ("CONVEYOR_K8S_NAMESPACE", "conveyor", "conveyor"),
    ("CONVEYOR_K8S_CONTEXT", "prod", "prod"),
    ("CONVEYOR_SCHEDULING_MAX_DELAY_S", "3600", 3600.0),
    ("CONVEYOR_SCHEDULING_TIMER_RETENTION_S", "86400", 86400.0),
    ("CONVEYOR_SCHEDULING_POLL_INTERVAL_S", "0.25", 0.25),
    ("CONVEYOR_SCHEDULING_LEASE_S", "10", 10.0),
    ("CONVEYOR_SCHEDULING_CLAIM_THREADS", "4", 4),
    ("CONVEYOR_SCHEDULING_MAX_JOBS_PER_TURN", "100", 100),
    ("CONVEYOR_SCHEDULING_HEALTH_PORT", "8002", 8002),
    ("CONVEYOR_SCHEDULING_HEALTH_HOST", "10.0.0.5", "10.0.0.5"),
    ("CONVEYOR_IMPORT_PROJECT_DIR", "false", False),
    ("CONVEYOR_USE_AWS", "true", True),
    ("CONVEYOR_DISCOVERY", "false", False),
    ("CONVEYOR_CONSOLE_SESSION_SECRET", "s" * 32, "s" * 32),
    ("CONVEYOR_CONSOLE_SESSION_MAX_AGE_S", "600", 600.0),
    ("CONVEYOR_CONSOLE_AWS_TIMEOUT_S", "2.5", 2.5),
    ("CONVEYOR_CONSOLE_SAMPLE_INTERVAL_S", "30", 30.0),
]


@pytest.mark.parametrize(("variable", "raw", "expected"), LOADED)
def test_each_variable_reaches_its_section(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    attribute, field = every_variable()[variable]
    assert getattr(getattr(load_settings(), attribute), field) == expected


def test_the_table_above_covers_every_variable() -> None:
    # CONVEYOR_API_KEY, the deprecated client key, has tests of its own below.
    assert {v for v, _, _ in LOADED} | {"CONVEYOR_API_KEY"} == set(every_variable())


def test_no_two_fields_read_the_same_variable() -> None:
    names = [s.env_name(f) for s in SECTIONS.values() for f in s.model_fields]
    assert len(names) == len(set(names))


def test_defaults() -> None:
    settings = load_settings()
    assert settings.topology.queues_file == Path("queues.yaml")
    assert settings.topology.environment is None
    assert (settings.logging.format, settings.logging.level) == ("auto", "INFO")
    worker = settings.worker
    assert worker.ack_flush_interval_s == 1.0
    assert worker.worker_shutdown_grace_s == 30.0
    assert worker.worker_liveness_timeout_s == 120.0
    assert worker.worker_health_port is None
    api = settings.api
    assert (api.auth, api.keys_file, api.keys) == ("keys", None, None)
    assert (api.rate_per_s, api.burst) == (200.0, 1000.0)
    assert (api.idempotency_retention_s, api.idempotency_lease_s) == (86400.0, 30.0)
    assert api.publish_threads == 8
    assert (api.aws_connect_timeout_s, api.aws_read_timeout_s) == (2.0, 10.0)
    assert api.max_body_bytes is None
    assert settings.client.api_url == "http://127.0.0.1:8000"
    assert settings.client.client_api_key is None
    assert settings.aws.aws_account_id is None
    assert settings.emulator.emulator_fixes == "all"
    scaling = settings.scaling
    assert (scaling.scaling_backend, scaling.state_dir) == ("local", None)
    assert (scaling.ecs_cluster, scaling.k8s_namespace, scaling.k8s_context) == (None, None, None)


@pytest.mark.parametrize(
    "variable",
    [
        "CONVEYOR_AWS_ACCOUNT_ID",
        "CONVEYOR_STATE_DIR",
        "CONVEYOR_ECS_CLUSTER",
        "CONVEYOR_K8S_NAMESPACE",
        "CONVEYOR_K8S_CONTEXT",
    ],
)
def test_an_empty_value_is_unset_where_it_always_was(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "")
    attribute, field = every_variable()[variable]
    assert getattr(getattr(load_settings(), attribute), field) is None


def test_explicit_values_still_construct_a_section() -> None:
    assert ApiSettings(idempotency_lease_s=5).idempotency_lease_s == 5


def test_settings_has_every_section_and_no_other() -> None:
    attributes = {
        name
        for name, value in vars(Settings).items()
        if isinstance(value, functools.cached_property)
    }
    assert attributes == set(SECTIONS)
    settings = load_settings()
    for attribute, section in SECTIONS.items():
        assert type(getattr(settings, attribute)) is section


# -- invalid values -----------------------------------------------------------------------


def test_an_invalid_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_WORKER_HEALTH_PORT", "ninety")
    with pytest.raises(SettingsError) as caught:
        _ = load_settings().worker
    assert str(caught.value) == (
        "CONVEYOR_WORKER_HEALTH_PORT: Input should be a valid integer,"
        " unable to parse string as an integer"
    )
    # A configuration error (exit 2 in the CLI), and still a ValueError as pydantic's was.
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, ValueError)


def test_every_invalid_value_is_named_and_none_is_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_API_RATE_PER_S", "0")
    monkeypatch.setenv("CONVEYOR_API_PUBLISH_THREADS", "65")
    monkeypatch.setenv("CONVEYOR_API_AUTH", "cvy_secret-looking")
    with pytest.raises(SettingsError) as caught:
        _ = load_settings().api
    message = str(caught.value)
    assert "CONVEYOR_API_RATE_PER_S: Input should be greater than 0" in message
    assert "CONVEYOR_API_PUBLISH_THREADS: Input should be less than or equal to 64" in message
    assert "CONVEYOR_API_AUTH: Input should be 'keys' or 'none'" in message
    assert "cvy_secret-looking" not in message


def test_a_bad_value_breaks_only_its_own_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "xml")
    settings = load_settings()
    assert settings.client.api_url == "http://127.0.0.1:8000"
    with pytest.raises(SettingsError, match="CONVEYOR_LOG_FORMAT: Input should be 'auto'"):
        _ = settings.logging


def test_conveyor_api_reports_bad_api_settings_as_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    monkeypatch.setenv("CONVEYOR_API_BURST", "0.5")
    result = CliRunner().invoke(app, ["api"])
    assert result.exit_code == 2, result.output
    assert "conveyor: CONVEYOR_API_BURST: Input should be greater than or equal to 1" in (
        result.output
    )


# -- the client's key: CONVEYOR_CLIENT_API_KEY, and the deprecated CONVEYOR_API_KEY -----------


def client_key() -> tuple[str | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        key = load_settings().client.client_api_key
    return key, [str(w.message) for w in caught if w.category is DeprecationWarning]


def test_the_new_name_gives_the_key_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CLIENT_API_KEY", "cvy_new")
    assert client_key() == ("cvy_new", [])


def test_the_old_name_still_works_with_a_deprecation_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_old")
    assert client_key() == ("cvy_old", [ClientSettings.DEPRECATED_KEY_WARNING])
    assert "CONVEYOR_CLIENT_API_KEY" in ClientSettings.DEPRECATED_KEY_WARNING


def test_the_new_name_wins_when_both_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CLIENT_API_KEY", "cvy_new")
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_old")
    assert client_key() == ("cvy_new", [])


def test_empty_names_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CLIENT_API_KEY", "")
    monkeypatch.setenv("CONVEYOR_API_KEY", "")
    assert client_key() == (None, [])
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_old")
    assert client_key()[0] == "cvy_old"


def enqueue_recording_the_key(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str | None]]:
    """``conveyor enqueue`` against an API answering 202; returns the result and keys sent."""
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("Authorization"))
        body = {"id": "job-1", "type": "demo.job", "status_url": "/v1/jobs/job-1"}
        return httpx.Response(202, content=json.dumps(body))

    class Recorded(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(cli_api, "Client", Recorded)
    monkeypatch.setattr(cli_api, "_WARNED", set())  # a fresh process, as far as warnings go
    result = CliRunner().invoke(app, ["enqueue", "demo.job", "--data", "{}"])
    assert result.exit_code == 0, result.output
    return result, sent


def test_the_cli_sends_the_new_name_s_key_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CLIENT_API_KEY", "cvy_new")
    result, sent = enqueue_recording_the_key(monkeypatch)
    assert sent == ["Bearer cvy_new"]
    assert (result.stdout, result.stderr) == ("job-1\n", "")


def test_the_cli_warns_on_stderr_when_the_old_name_gives_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_old")
    result, sent = enqueue_recording_the_key(monkeypatch)
    assert sent == ["Bearer cvy_old"]
    assert result.stdout == "job-1\n"  # what scripts read stays clean
    assert result.stderr == f"conveyor: warning: {ClientSettings.DEPRECATED_KEY_WARNING}\n"
    # Once per process, as Python's own warnings: a second call is quiet.
    again = CliRunner().invoke(app, ["enqueue", "demo.job", "--data", "{}"])
    assert (again.exit_code, again.stdout, again.stderr) == (0, "job-1\n", "")
    assert sent == ["Bearer cvy_old", "Bearer cvy_old"]


def test_the_cli_option_overrides_both_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_old")
    client = cli_api.api_client(None, "cvy_option", 5.0)
    with client:
        assert client._http.headers["Authorization"] == "Bearer cvy_option"


# -- the one place that reads the environment ---------------------------------------------


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_only_the_settings_module_touches_os_environ() -> None:
    reads = re.compile(r"\bos\.(environ|getenv|putenv|unsetenv)\b|\bfrom os import .*\benviron\b")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in source_files()
        if path != SETTINGS_MODULE
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if reads.search(line)
    ]
    assert offenders == []


def test_every_conveyor_variable_in_the_source_is_a_setting() -> None:
    known = set(every_variable()) | set(OTHER_VARIABLES) | NOT_VARIABLES
    # A name ending in "_" is a prefix in prose or in an f-string ("CONVEYOR_API_{...}").
    named = {
        match
        for path in source_files()
        for match in re.findall(r"CONVEYOR_[A-Z0-9_]+", path.read_text(encoding="utf-8"))
        if not match.endswith("_")
    }
    assert named - known == set()


def test_child_environment_is_this_one_plus_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_LEVEL", "DEBUG")
    env = child_environment(CONVEYOR_ENVIRONMENT="child")
    assert env["CONVEYOR_LOG_LEVEL"] == "DEBUG"
    assert env["CONVEYOR_ENVIRONMENT"] == "child"
    assert "CONVEYOR_ENVIRONMENT" not in os.environ


def test_importing_the_settings_loads_nothing_else_of_ours() -> None:
    code = (
        "import sys, infra.settings\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == repr(["infra", "infra.errors", "infra.settings"])
