"""Local discovery: how a command in another shell finds the system ``conveyor up`` runs.

``conveyor up`` writes one file, ``.conveyor/up.json`` in the directory of queues.yaml
(:func:`discovery_path`), once the system serves, and removes it when it stops. The
file names the emulator's endpoint, the API's URL, the web console's URL, the health
URLs, the state directory and the pid of ``up``; a file whose pid is gone (``up`` was killed) is
stale and ignored. See :class:`Discovered` for the fields.

Every command (and the Python client, for the API URL) resolves what it talks to
here, explicit settings first:

* AWS: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` or ``AWS_PROFILE`` set, or
  ``CONVEYOR_USE_AWS``, or ``CONVEYOR_DISCOVERY=false``: the environment's AWS, as
  boto3 reads it. Otherwise, with a live file that names an emulator: that emulator
  (with its test credentials and region), and its environment name unless
  ``CONVEYOR_ENVIRONMENT`` is set.
* The API: ``--api-url``, else ``CONVEYOR_API_URL``, else the live file's API URL,
  else ``http://127.0.0.1:8000``.

:func:`apply_discovery` puts the discovered AWS values into this process's
environment (so boto3 and every child process see them); :func:`current_target`
says in one line what a command talks to and where that came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.settings import (
    aws_endpoint_url,
    aws_target_variables,
    load_settings,
    set_environment,
)

#: The file's name and directory, beside queues.yaml.
DISCOVERY_DIR = ".conveyor"
DISCOVERY_FILE = "up.json"
#: Bumped when a field changes meaning; a reader ignores a file of another version.
VERSION = 1
#: The API's URL when nothing says otherwise (``conveyor api``'s default port).
DEFAULT_API_URL = "http://127.0.0.1:8000"
#: The emulator accepts any credentials; these are the ones ``conveyor up`` gives its roles.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class Discovered:
    """What a running ``conveyor up`` wrote about itself (``up.json``)."""

    #: The pid of ``conveyor up``: the file is live while it runs.
    pid: int
    #: The producer API, e.g. ``http://127.0.0.1:8000``.
    api_url: str
    #: The embedded emulator's endpoint; None when ``up --aws`` runs against AWS.
    endpoint_url: str | None
    #: The region the roles use.
    region: str
    #: The queues.yaml ``up`` loaded (absolute), its project and environment.
    queues_file: str
    project: str
    environment: str
    #: The supervisor's state directory (``conveyor workers scale`` reaches it there).
    state_dir: str | None = None
    #: ``/healthz`` of each role with a fixed address (the API; worker nodes' ports change
    #: as they restart: the supervisor's status in ``state_dir`` lists them).
    health_urls: dict[str, str] = field(default_factory=dict)
    #: When ``up`` started serving (ISO 8601, UTC).
    started_at: str = ""
    version: int = VERSION
    #: The web console (``conveyor console``), e.g. ``http://127.0.0.1:8080``; None when
    #: ``up`` runs none.
    console_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Discovered | None:
        """The record in ``data``, None when it is not one this version wrote."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        try:
            return cls(
                pid=int(data["pid"]),
                api_url=str(data["api_url"]),
                endpoint_url=str(data["endpoint_url"]) if data.get("endpoint_url") else None,
                region=str(data.get("region") or "us-east-1"),
                queues_file=str(data.get("queues_file") or ""),
                project=str(data.get("project") or ""),
                environment=str(data.get("environment") or ""),
                state_dir=str(data["state_dir"]) if data.get("state_dir") else None,
                health_urls={str(k): str(v) for k, v in (data.get("health_urls") or {}).items()},
                started_at=str(data.get("started_at") or ""),
                console_url=str(data["console_url"]) if data.get("console_url") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def discovery_path(queues_file: str | os.PathLike[str] | None = None) -> Path:
    """``.conveyor/up.json`` beside ``queues_file`` (default: ``CONVEYOR_QUEUES_FILE``)."""
    path = Path(queues_file) if queues_file is not None else load_settings().topology.queues_file
    return path.parent / DISCOVERY_DIR / DISCOVERY_FILE


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_discovery(path: Path, record: Discovered) -> None:
    """Replace ``path`` with ``record`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_discovery(path: Path, pid: int) -> None:
    """Remove ``path`` if it still names ``pid`` (a newer ``up`` may have replaced it)."""
    found = read_discovery(path, live_only=False)
    if found is not None and found.pid == pid:
        path.unlink(missing_ok=True)


def read_discovery(path: Path | None = None, *, live_only: bool = True) -> Discovered | None:
    """The record at ``path`` (default: :func:`discovery_path`); None when there is none,
    it is unreadable, or (``live_only``) the ``up`` that wrote it is gone."""
    try:
        data = json.loads((path or discovery_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # any damaged file: as if there were none
        return None
    found = Discovered.from_json(data)
    if found is None or (live_only and not pid_alive(found.pid)):
        return None
    return found


# -- what a command talks to ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What this process talks to, and where each part came from (for one line or JSON)."""

    #: The AWS endpoint, None for AWS itself (region and credentials as boto3 finds them).
    aws_endpoint_url: str | None
    #: Where the AWS target came from, e.g. ``AWS_ENDPOINT_URL`` or the discovery file.
    aws_source: str
    api_url: str
    api_source: str
    environment: str | None = None
    #: The discovery file used, if any.
    discovery_file: str | None = None
    #: The pid of the ``conveyor up`` that file describes.
    up_pid: int | None = None

    def line(self) -> str:
        """``AWS http://127.0.0.1:40123 (…) · API http://127.0.0.1:8000 (…)``."""
        env = f", environment {self.environment}" if self.environment else ""
        if self.discovery_file and self.aws_source == self.api_source:
            return (
                f"talking to: the emulator {self.aws_endpoint_url} and the API {self.api_url}"
                f" of `conveyor up` pid {self.up_pid} (from {self.discovery_file}){env}"
            )
        aws = self.aws_endpoint_url or "AWS"
        return (
            f"talking to: AWS {aws} ({self.aws_source}) and the API {self.api_url}"
            f" ({self.api_source}){env}"
        )

    def to_json(self) -> dict[str, Any]:
        """The same as a JSON object."""
        return asdict(self)


#: What :func:`apply_discovery` applied in this process (None: nothing).
_applied: Discovered | None = None
_applied_path: Path | None = None


def _describe_file(path: Path, found: Discovered) -> str:
    return f"{path}, written by `conveyor up` pid {found.pid}"


def apply_discovery() -> Discovered | None:
    """Point this process's AWS at the running ``conveyor up``'s emulator, when nothing
    explicit says otherwise (see the module's docstring); returns the record applied.

    Called once at the start of a command. Sets ``AWS_ENDPOINT_URL``, the emulator's
    credentials, ``AWS_DEFAULT_REGION`` and, when unset, ``CONVEYOR_ENVIRONMENT`` and
    ``CONVEYOR_STATE_DIR``, so boto3, the settings and child processes agree.
    """
    global _applied, _applied_path  # one record per process, set once
    settings = load_settings()
    if not settings.local.discovery or settings.local.use_aws or aws_target_variables():
        return None
    path = discovery_path()
    found = read_discovery(path)
    if found is None or found.endpoint_url is None:
        return None
    values = {
        "AWS_ENDPOINT_URL": found.endpoint_url,
        "AWS_DEFAULT_REGION": found.region,
        **EMULATOR_CREDENTIALS,
    }
    if not settings.topology.environment and found.environment:
        values["CONVEYOR_ENVIRONMENT"] = found.environment
    if settings.scaling.state_dir is None and found.state_dir:
        values["CONVEYOR_STATE_DIR"] = str(Path(found.state_dir).parent)
    set_environment(values)
    _applied, _applied_path = found, path
    return found


def resolve_api_url(explicit: str | None = None) -> tuple[str, str]:
    """The API's URL and where it came from: ``explicit`` (``--api-url``, a client's
    argument), ``CONVEYOR_API_URL``, the running ``conveyor up``, the default."""
    if explicit:
        return explicit, "--api-url"
    settings = load_settings()
    client = settings.client
    if "api_url" in client.model_fields_set:
        return client.api_url, "CONVEYOR_API_URL"
    if settings.local.discovery:
        path = discovery_path()
        found = read_discovery(path)
        if found is not None:
            return found.api_url, _describe_file(path, found)
    return DEFAULT_API_URL, "the default"


def current_target(api_url: str | None = None) -> Target:
    """What this process talks to now, after :func:`apply_discovery`."""
    url, api_source = resolve_api_url(api_url)
    environment = load_settings().topology.environment
    if _applied is not None and _applied_path is not None:
        return Target(
            _applied.endpoint_url,
            _describe_file(_applied_path, _applied),
            url,
            api_source,
            environment=environment,
            discovery_file=str(_applied_path),
            up_pid=_applied.pid,
        )
    endpoint = aws_endpoint_url()
    given = aws_target_variables()
    if endpoint:
        source = "AWS_ENDPOINT_URL"
    elif given:
        source = f"{given[0]}; no AWS_ENDPOINT_URL"
    else:
        source = "the AWS configuration boto3 finds; no AWS_ENDPOINT_URL"
    return Target(endpoint, source, url, api_source, environment=environment)


def endpoint_hint() -> str:
    """Which setting named the AWS endpoint, and how to stop it doing so (for an
    unreachable endpoint's one-line error); empty when no endpoint is set."""
    endpoint = aws_endpoint_url()
    if not endpoint:
        return ""
    if _applied is not None and _applied_path is not None and _applied.endpoint_url == endpoint:
        return (
            f"the endpoint came from {_describe_file(_applied_path, _applied)}: is that"
            f" `conveyor up` still healthy? Delete {_applied_path} to forget it"
        )
    return (
        f"AWS_ENDPOINT_URL={endpoint} is set in the environment: `unset AWS_ENDPOINT_URL`"
        " to use the running `conveyor up` (or AWS itself)"
    )


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (a local API or emulator)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
