"""The console's FastAPI app: sessions, login, CSRF, the error pages; the routes are in
:mod:`ops.console.pages`.

Who may do what:

- authentication on (the API's keys): a visitor without a session is sent to /login;
  a key with the ``viewer`` scope reads every page, ``operator`` (or ``admin``) also
  acts. JSON twins under /api accept the key as ``Authorization: Bearer`` too, for
  scripts without a cookie.
- authentication off (the embedded emulator, decided exactly as the API decides:
  ``CONVEYOR_API_AUTH=none``, which ``conveyor up`` sets there): everyone is the
  operator ``anonymous``.
- ``--read-only``: nobody acts, whatever the key.

Every POST checks the CSRF token of the session (form field ``csrf_token`` or header
``X-CSRF-Token``), then the role; a refusal is a 403 page with the reason. A viewer's
(or a read-only console's) pages carry no action control at all: the templates leave
out every element with ``data-action``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.logs import get_logger
from ops.console.charts import sparkline
from ops.console.deps import ConsoleDeps, Principal
from ops.console.sampler import Sampler
from ops.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions, new_secret
from ops.console.tasks import Tasks
from ops.console.views import LIST_SCAN_LIMIT, sqs_client
from ops.dlq.render import age
from ops.scaling.status import StatusReader, SystemStatus

log = get_logger("conveyor.console")

HERE = Path(__file__).parent
#: Paths served without a session.
PUBLIC_PREFIXES = ("/login", "/healthz", "/static/")
#: The principal of a console without authentication.
ANONYMOUS = Principal("anonymous", "operator")


class RefusedError(Exception):
    """A request the console refuses (403 unless ``status`` says otherwise), with why."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Console:
    """The app's state: what was injected, sessions, the sampler, the redrive tasks."""

    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps
        self.topology = deps.topology
        self.sessions = Sessions(deps.session_secret or new_secret(), deps.session_max_age_s)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(age=age, sparkline=sparkline)
        state_dir = (
            getattr(deps.backend, "state_dir", None) if deps.backend_name == "local" else None
        )
        self.sampler = Sampler(
            deps.topology, sqs_client, interval_s=deps.sample_interval_s, state_dir=state_dir
        )
        self.tasks = Tasks()
        self._status = StatusReader(
            deps.topology, deps.backend, deps.backend_name, dlq_scan_limit=LIST_SCAN_LIMIT
        )
        self._status_lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def auth(self) -> bool:
        """Whether visitors must log in."""
        return self.deps.authenticate is not None

    def read_status(self) -> SystemStatus:
        """``conveyor status``'s reading (one at a time: the reader caches DLQ ages)."""
        with self._status_lock:
            found = self._status.read()
        if self.deps.backend_error and found.pools_error is None:
            found = dataclasses.replace(found, pools_error=self.deps.backend_error)
        return found

    def start(self) -> None:
        """Start sampling in the background."""
        threading.Thread(
            target=self.sampler.run, args=(self._stop,), name="console-sampler", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()

    # -- sessions and permissions ------------------------------------------------------

    def session(self, request: Request) -> Session:
        """The request's session (the middleware always sets one)."""
        session: Session = request.state.session
        return session

    def principal(self, request: Request) -> Principal | None:
        """Who makes the request (None: not logged in)."""
        bearer: Principal | None = getattr(request.state, "bearer", None)
        return bearer or self.session(request).principal

    def can_act(self, request: Request) -> bool:
        """Whether the page should offer actions (and the server accept them)."""
        principal = self.principal(request)
        return principal is not None and principal.operator and not self.deps.read_only

    async def action(self, request: Request) -> tuple[Principal, FormData]:
        """The form of an action POST, once its CSRF token and the role are checked."""
        form = await request.form()
        token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        session = self.session(request)
        if not self.sessions.csrf_ok(session, token if isinstance(token, str) else None):
            log.warning("console.refused", path=request.url.path, why="csrf")
            raise RefusedError(
                "refused: missing or invalid CSRF token (reload the page and try again;"
                " a form from another site cannot act here)"
            )
        principal = session.principal
        if self.deps.read_only:
            raise RefusedError(
                "refused: this console is read-only (--read-only): nothing can change"
            )
        if principal is None or not principal.operator:
            who = principal.name if principal else "nobody"
            log.warning("console.refused", path=request.url.path, who=who, why="viewer")
            raise RefusedError(f"refused: '{who}' is a viewer: viewers may look, not act")
        return principal, form

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        """A page, with what every page needs (who, CSRF token, whether it may act)."""
        session = self.session(request)
        principal = self.principal(request)
        errors = [e for e in context.pop("errors", []) if e]
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "principal": principal,
                "can_act": self.can_act(request),
                "read_only": self.deps.read_only,
                "auth": self.auth,
                "csrf_token": self.sessions.csrf_token(session),
                "errors": errors,
                "topology": self.topology,
                "now": time.time(),
                **context,
            },
            status_code=status_code,
        )


def _public(path: str) -> bool:
    return path == "/login" or path.startswith(PUBLIC_PREFIXES)


def _set_cookie(console: Console, request: Request, response: Response) -> None:
    response.set_cookie(
        COOKIE,
        console.sessions.dump(console.session(request)),
        max_age=int(console.sessions.max_age_s),
        path="/",
        httponly=True,
        samesite="strict",
        # Over TLS (directly, or behind a proxy uvicorn trusts for X-Forwarded-Proto).
        secure=request.url.scheme == "https",
    )


def create_app(deps: ConsoleDeps, *, sample: bool = True) -> FastAPI:  # noqa: PLR0915 - the routes of sessions in one place
    """The console for ``deps`` (``sample``: run the background sampler)."""
    console = Console(deps)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sample:
            console.start()
        yield
        console.stop()

    app = FastAPI(
        title="Conveyor console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.console = console
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def sessions(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        session = console.sessions.load(request.cookies.get(COOKIE))
        fresh = session is None or (not console.auth and session.principal is None)
        if fresh:
            session = console.sessions.new(None if console.auth else ANONYMOUS)
        request.state.session = session
        request.state.set_session = fresh
        path = request.url.path
        if console.auth and path.startswith("/api/"):
            presented = request.headers.get("authorization", "")
            scheme, _, key = presented.partition(" ")
            if scheme.lower() == "bearer" and key.strip() and console.deps.authenticate:
                request.state.bearer = console.deps.authenticate(key.strip())
        if console.principal(request) is None and not _public(path):
            response: Response
            if request.headers.get("hx-request"):
                # An htmx poll after the session ended: the whole page goes to the login.
                response = Response(status_code=204, headers={"HX-Redirect": "/login"})
            elif path.startswith("/api/"):
                response = JSONResponse(
                    {"detail": "log in first (POST /login), or send Authorization: Bearer <key>"},
                    status_code=401,
                )
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
        else:
            response = await call_next(request)
        if request.state.set_session:
            _set_cookie(console, request, response)
        return response

    @app.exception_handler(RefusedError)
    async def refused(request: Request, exc: RefusedError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.reason}, status_code=exc.status)
        return console.render(
            request,
            "message.html",
            status_code=exc.status,
            title="RefusedError",
            message=exc.reason,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/static/")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return console.render(
            request,
            "message.html",
            status_code=exc.status_code,
            title=str(exc.status_code),
            message=str(exc.detail),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not AWS (AWS reads are bounded and shown as banners): still a page.
        log.exception("console.error", path=request.url.path)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=500)
        return console.render(
            request,
            "message.html",
            status_code=500,
            title="Error",
            errors=[f"the console failed: {type(exc).__name__}: {exc}"],
            message="",
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "auth": console.auth, "read_only": deps.read_only}

    @app.get("/login")
    def login_page(request: Request, next: str = "/") -> Response:
        if not console.auth or console.session(request).principal is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return console.render(request, "login.html", next=_safe_next(next))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not console.sessions.csrf_ok(
            console.session(request), token if isinstance(token, str) else None
        ):
            raise RefusedError("refused: missing or invalid CSRF token (reload the login page)")
        target = _safe_next(str(form.get("next") or "/"))
        key = str(form.get("key") or "").strip()
        principal = deps.authenticate(key) if deps.authenticate and key else None
        if principal is None:
            log.warning("console.login_failed")
            return console.render(
                request,
                "login.html",
                status_code=401,
                next=target,
                errors=["unknown key, or a key without a console scope (viewer, operator, admin)"],
            )
        request.state.session = console.sessions.new(principal)
        request.state.set_session = True
        log.info("console.login", who=principal.name, role=principal.role)
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        session = console.session(request)
        if not console.sessions.csrf_ok(session, token if isinstance(token, str) else None):
            raise RefusedError("refused: missing or invalid CSRF token")
        if session.principal is not None:
            log.info("console.logout", who=session.principal.name)
        request.state.session = console.sessions.new(None if console.auth else ANONYMOUS)
        request.state.set_session = True
        return RedirectResponse("/login" if console.auth else "/", status_code=303)

    from ops.console.pages import register  # noqa: PLC0415 - the routes need the app

    register(app, console)
    return app


def _safe_next(target: str) -> str:
    """Only a path on this site (never ``//host`` or a URL): no open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
