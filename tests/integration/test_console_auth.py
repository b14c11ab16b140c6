"""Who may do what in the console: login with the API's keys (viewer, operator), the session
cookie, CSRF on every action, a viewer's and a read-only console's pages without any action
control, a failing or silent AWS giving pages with an error banner — and the real
``conveyor console`` process serving it all.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor.cli.console import authenticator
from infra import aws, provision
from infra.net import free_port
from infra.topology import Topology, load_topology
from ops.console.app import create_app
from ops.console.deps import ConsoleDeps
from ops.scaling.backends import backend_for
from ops.scaling.store import DesiredStore, state_dir_for
from producers.auth import ApiKey, generate_key, hash_key
from tests import REPO
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import CONVEYOR, Child
from tests.support.queues import dead_letter

pytestmark = pytest.mark.integration

QUEUES_FILE = REPO / "tests" / "fixtures" / "dlq.yaml"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGES = ("/", "/dead-letters", "/dead-letters/work", "/jobs", "/pools", "/schedules")
VIEWER, OPERATOR, PRODUCER = generate_key(), generate_key(), generate_key()
KEYS = [
    ApiKey("watcher", hash_key(VIEWER), scopes=frozenset({"viewer"})),
    ApiKey("oncall", hash_key(OPERATOR), scopes=frozenset({"operator"})),
    ApiKey("checkout", hash_key(PRODUCER)),
]


@pytest.fixture
def topology(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Topology:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path / "state"))
    found = load_topology(QUEUES_FILE, environment=aws_env.environment)
    provision.apply(found)
    dead_letter(aws.client("sqs"), _dlq_url(found), "dlq.fragile", "seen")
    return found


def _dlq_url(topology: Topology) -> str:
    return aws.client("sqs").get_queue_url(QueueName=topology.dlq_name("work"))["QueueUrl"]


def _console(topology: Topology, *, read_only: bool = False, timeout_s: float = 10.0) -> TestClient:
    deps = ConsoleDeps(
        topology=topology,
        authenticate=authenticator(KEYS),
        read_only=read_only,
        backend=backend_for("local", topology),
        session_secret=b"s" * 32,
        aws_timeout_s=timeout_s,
    )
    return TestClient(create_app(deps, sample=False))


def _csrf(client: TestClient | httpx.Client, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found is not None, path
    return found.group(1)


def _login(client: TestClient, key: str) -> httpx.Response:
    token = _csrf(client, "/login")
    return client.post(
        "/login", data={"csrf_token": token, "key": key, "next": "/pools"}, follow_redirects=False
    )


def test_a_visitor_must_log_in_with_a_console_key(topology: Topology) -> None:
    with _console(topology) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=/"
        assert client.get("/api/overview").status_code == 401
        # An htmx poll without a session sends the whole page to the login.
        poll = client.get("/fragments/overview", headers={"HX-Request": "true"})
        assert (poll.status_code, poll.headers["hx-redirect"]) == (204, "/login")
        login = client.get("/login").text
        assert 'data-testid="login-key"' in login
        assert 'data-testid="login-submit"' in login
        assert _login(client, "cvy_wrong").status_code == 401
        # An API key without a console scope (a producer's) does not open the console.
        assert _login(client, PRODUCER).status_code == 401
        refused = client.post("/login", data={"key": VIEWER})
        assert refused.status_code == 403
        assert "CSRF" in refused.text

        answer = _login(client, VIEWER)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/pools"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "secure" not in cookie  # plain HTTP here; Secure over TLS
        assert client.get("/").status_code == 200


def test_a_viewer_sees_no_action_and_the_server_refuses_its_posts(topology: Topology) -> None:
    with _console(topology) as client:
        _login(client, VIEWER)
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            assert "data-action" not in page.text, path
        assert 'data-testid="dlq-job"' in client.get("/dead-letters/work").text
        token = _csrf(client, "/pools")
        for path, data in (
            ("/pools/main/scale", {"desired": "1"}),
            ("/dead-letters/work/redrive/preview", {}),
            ("/dead-letters/work/delete", {"message_id": "x"}),
            ("/jobs/some-job/cancel", {}),
        ):
            refused = client.post(path, data={"csrf_token": token, **data})
            assert refused.status_code == 403, path
            assert "viewer" in refused.text
    assert DesiredStore(state_dir_for(topology)).read() == {}


def test_an_operator_acts_only_with_the_sessions_csrf_token(topology: Topology) -> None:
    store = DesiredStore(state_dir_for(topology))
    with _console(topology) as client:
        _login(client, OPERATOR)
        pools = client.get("/pools").text
        assert 'data-testid="scale-input-main"' in pools
        assert 'data-testid="scale-submit-main"' in pools
        forged = client.post("/pools/main/scale", data={"desired": "2"})
        assert forged.status_code == 403
        assert "CSRF" in forged.text
        other = client.post("/pools/main/scale", data={"desired": "2", "csrf_token": "0" * 64})
        assert other.status_code == 403
        assert store.read() == {}

        # dlq.yaml's pool main has the default bounds 1..1.
        scaled = client.post(
            "/pools/main/scale", data={"desired": "1", "csrf_token": _csrf(client, "/pools")}
        )
        assert scaled.status_code == 200
        assert re.search(r'data-testid="pool-desired">1<', scaled.text)
        assert "main: desired 1 → 1" in scaled.text
        assert store.read() == {"main": 1}
        # The header htmx sends does as well as the form field (past the CSRF check, the
        # bounds refuse this one, with the reason).
        outside = client.post(
            "/pools/main/scale",
            data={"desired": "2"},
            headers={"X-CSRF-Token": _csrf(client, "/pools")},
        )
        assert outside.status_code == 400
        assert "outside pools.main.replicas (1..1)" in outside.text
        assert store.read() == {"main": 1}

        # A new login is a new session: the old token no longer acts.
        old = _csrf(client, "/pools")
        _login(client, OPERATOR)
        stale = client.post("/pools/main/scale", data={"desired": "1", "csrf_token": old})
        assert stale.status_code == 403


def test_a_read_only_console_offers_and_accepts_no_action(topology: Topology) -> None:
    with _console(topology, read_only=True) as client:
        _login(client, OPERATOR)
        for path in PAGES:
            assert "data-action" not in client.get(path).text, path
        refused = client.post(
            "/pools/main/scale", data={"desired": "2", "csrf_token": _csrf(client, "/pools")}
        )
        assert refused.status_code == 403
        assert "read-only" in refused.text


def test_scripts_read_the_twins_with_a_bearer_key(topology: Topology) -> None:
    with _console(topology) as client:
        answer = client.get("/api/pools", headers={"Authorization": f"Bearer {VIEWER}"})
        assert answer.status_code == 200
        assert answer.json()["pools"][0]["pool"] == "main"
        assert client.get("/api/pools", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_failing_aws_gives_pages_with_an_error_banner(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    aws.reset_clients()
    with _console(topology) as client:
        _login(client, VIEWER)
        for path in PAGES[:3]:
            page = client.get(path)
            assert page.status_code == 200, path
            assert 'data-testid="error-banner"' in page.text, path
        assert client.get("/api/dead-letters").status_code == 503


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_silent_aws_gives_the_page_with_a_banner_not_a_hung_request(
    topology: Topology, monkeypatch: pytest.MonkeyPatch, silent_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    aws.reset_clients()
    with _console(topology, timeout_s=1.0) as client:
        _login(client, VIEWER)
        page = client.get("/dead-letters/work")
        assert page.status_code == 200
        banner = re.search(r'data-testid="error-banner"[^>]*>\s*<p>([^<]+)<', page.text)
        assert banner is not None
        assert "no answer within 1 s" in banner.group(1)


class ConsoleProcess(Child):
    """``conveyor console --port PORT …`` on a free loopback port."""

    def __init__(self, *, env: dict[str, str], log_dir: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        super().__init__(
            "console",
            [*CONVEYOR, "console", "--port", str(self.port), *args],
            env=env,
            log_dir=log_dir,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        answer = self.answers(f"{self.url}/healthz")
        return answer is not None and answer.status_code == 200


def test_the_console_command_serves_logs_in_and_audits_actions(
    topology: Topology, aws_env: AwsEnv, tmp_path: Path
) -> None:
    keys = {
        "keys": [{"name": k.name, "sha256": k.sha256, "scopes": sorted(k.scopes)} for k in KEYS]
    }
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(QUEUES_FILE),
        "CONVEYOR_STATE_DIR": str(tmp_path / "state"),
        "CONVEYOR_API_AUTH": "keys",
        "CONVEYOR_API_KEYS": json.dumps(keys),
    }
    console = ConsoleProcess(env=env, log_dir=tmp_path)
    try:
        console.wait_ready()
        assert httpx.get(f"{console.url}/healthz").json()["auth"] is True
        with httpx.Client(base_url=console.url) as client:
            assert client.get("/").status_code == 303
            token = _csrf(client, "/login")
            client.post("/login", data={"csrf_token": token, "key": OPERATOR})
            assert client.get("/").status_code == 200
            assert client.get("/static/htmx.min.js").text.startswith("/*! htmx.org")
            scaled = client.post(
                "/pools/main/scale", data={"desired": "1", "csrf_token": _csrf(client, "/pools")}
            )
            assert scaled.status_code == 200

        def audited() -> dict[str, object] | None:
            for line in console.text().splitlines():
                if '"console.action"' in line:
                    return dict(json.loads(line))
            return None

        line = eventually(audited, timeout_s=10, what="the audit line")
        assert (line["who"], line["action"], line["pool"], line["after"]) == (
            "oncall",
            "scale",
            "main",
            1,
        )
    finally:
        console.stop()


def test_without_authentication_on_the_emulator_everyone_is_the_operator(
    topology: Topology, aws_env: AwsEnv, tmp_path: Path
) -> None:
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(QUEUES_FILE),
        "CONVEYOR_STATE_DIR": str(tmp_path / "state"),
        "CONVEYOR_API_AUTH": "none",  # what `conveyor up` sets on the embedded emulator
    }
    console = ConsoleProcess(env=env, log_dir=tmp_path, args=("--read-only",))
    try:
        console.wait_ready()
        page = httpx.get(f"{console.url}/pools")
        assert page.status_code == 200
        assert "anonymous (operator, read-only console)" in page.text
        assert "data-action" not in page.text
    finally:
        console.stop()
