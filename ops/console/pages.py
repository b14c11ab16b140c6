"""The console's pages, each with its JSON twin at ``/api`` + the same path.

A page handler gathers its data under :func:`ops.console.bounded.bounded` (a slow or
failing AWS gives the page with an error banner and a 200, never a 500 or a hung
request) and returns the template, the context and the JSON document together, so
the HTML and the twin cannot disagree. Actions are POSTs checked by
:meth:`ops.console.app.Console.action` (CSRF, role) and logged as one
``console.action`` line each (who, action, queue or pool, how many jobs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from infra.errors import ConveyorError
from infra.logs import get_logger
from ops import dlq as dlq_ops
from ops.console.app import Console, RefusedError
from ops.console.bounded import bounded, describe
from ops.console.tasks import RedriveTask, new_task_id
from ops.console.views import (
    FIND_RECEIVES,
    HOLD_S,
    SAMPLE_RECEIVES,
    SAMPLE_SIZE,
    attention,
    dead_letters,
    dlq_page,
    find_jobs,
    job_record,
    pools_document,
    sqs_client,
    timeline,
)
from ops.dlq import DeadLetterQueue, DlqError, JobFilter
from ops.dlq.redrive import without_handler
from ops.scaling.autoscaler import PoolPolicy
from ops.scaling.backlog import BacklogReader
from ops.scaling.errors import ScalingError
from ops.scaling.scale import scale
from ops.scaling.store import DecisionJournal
from ops.text import printable

log = get_logger("conveyor.console")

#: Jobs a preview (and so one redrive or delete) selects at most.
PREVIEW_LIMIT = 1_000
#: Autoscaler decisions the pools page lists (newest first).
RECENT_DECISIONS = 20
#: Jobs one export writes at most (ReceiveMessage calls: a tenth of it).
EXPORT_LIMIT = 10_000


@dataclass
class Page:
    """What a handler found: the template and its context, and the JSON twin."""

    template: str
    doc: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    status: int = 200
    #: The HTML page is a redirect to this path instead (the twin still answers ``doc``).
    redirect: str | None = None


def audit(who: str, action: str, **what: Any) -> None:
    """The one log line of an action."""
    log.info("console.action", who=who, action=action, **what)


def register(app: FastAPI, console: Console) -> None:  # noqa: PLR0915 - one place for every route
    """Add every page, its twin, its fragments and its actions to ``app``."""
    deps = console.deps
    topology = console.topology
    timeout_s = deps.aws_timeout_s

    def both(path: str, build: Callable[..., Page], api_path: str | None = None) -> None:
        """Serve ``build``'s page at ``path`` and its JSON at ``/api`` + ``path``."""

        def html(request: Request) -> Response:
            page = build(request, **request.path_params)
            if page.redirect is not None:
                return RedirectResponse(page.redirect, status_code=303)
            return console.render(
                request,
                page.template,
                status_code=page.status,
                errors=page.errors,
                doc=page.doc,
                **page.context,
            )

        def api(request: Request) -> Response:
            page = build(request, **request.path_params)
            status = page.status
            if page.errors and status == 200 and not page.doc:
                status = 503
            body = {**page.doc, "errors": page.errors} if page.errors else page.doc
            return JSONResponse(json.loads(json.dumps(body, default=str)), status_code=status)

        app.add_api_route(path, html, methods=["GET"], include_in_schema=False)
        app.add_api_route(api_path or "/api" + path, api, methods=["GET"], include_in_schema=False)

    def resolve(queue: str) -> DeadLetterQueue:
        try:
            return dlq_ops.resolve_dlq(topology, queue)
        except DlqError as exc:
            raise RefusedError(exc.message, status=404) from None

    # -- overview -----------------------------------------------------------------------

    def overview(request: Request) -> Page:
        read = bounded("reading queues and pools", console.read_status, timeout_s)
        status = read.value
        doc: dict[str, Any] = (
            {**status.to_json(), "target": deps.target} if status is not None else {}
        )
        last_hour = console.sampler.last_hour()
        doc["attention"] = attention(topology, status, console.sampler)
        doc["last_hour"] = {
            "window_s": round(last_hour.window_s),
            "known": last_hour.known,
            "source": "worker nodes' /metrics counters, sampled by the console",
            "by_queue": last_hour.by_queue,
        }
        charts = {q: console.sampler.series(q) for q in topology.queues}
        errors = [
            read.error,
            console.sampler.last_error and f"sampler: {console.sampler.last_error}",
        ]
        return Page(
            "overview.html",
            doc,
            {
                "status": status,
                "last_hour": last_hour,
                "charts": charts,
                "interval_s": console.sampler.interval_s,
            },
            errors=[e for e in errors if e],
        )

    both("/", overview, "/api/overview")

    @app.get("/fragments/overview", include_in_schema=False)
    def overview_fragment(request: Request) -> Response:
        page = overview(request)
        return console.render(
            request,
            "_overview.html",
            errors=page.errors,
            doc=page.doc,
            fragment=True,
            **page.context,
        )

    # -- dead letters -------------------------------------------------------------------

    def dead_letter_list(request: Request) -> Page:
        read = bounded("reading the DLQs", lambda: dead_letters(topology), timeout_s)
        return Page(
            "dead_letters.html", read.value or {}, errors=[read.error] if read.error else []
        )

    both("/dead-letters", dead_letter_list)

    def job_filter(source: Any, ids: list[str] | None = None) -> JobFilter:
        since = str(source.get("since") or "").strip()
        when = None
        if since:
            try:
                when = dlq_ops.parse_since(since, datetime.now(UTC))
            except ValueError as exc:
                raise RefusedError(str(exc).replace("--since", "since"), status=400) from None
        # Repeated fields or one comma-separated field (the page's filter box): both.
        types = [t.strip() for v in source.getlist("type") for t in str(v).split(",") if t.strip()]
        return JobFilter(
            job_types=tuple(types),
            error=str(source.get("error") or "").strip() or None,
            since=when,
            ids=frozenset(ids or ()),
        )

    def dlq(request: Request, queue: str) -> Page:
        resolved = resolve(queue)
        chosen = job_filter(request.query_params)
        read = bounded(
            f"peeking {resolved.name}", lambda: dlq_page(topology, queue, chosen), timeout_s
        )
        page = read.value
        return Page(
            "dlq.html",
            page.to_json() if page else {},
            {
                "dlq": resolved,
                "page": page,
                "filter": {
                    "type": ",".join(chosen.job_types),
                    "error": chosen.error or "",
                    "since": request.query_params.get("since", ""),
                },
                "sample_size": SAMPLE_SIZE,
                "max_receives": SAMPLE_RECEIVES,
            },
            errors=[read.error] if read.error else [],
        )

    both("/dead-letters/{queue}", dlq)

    def dead_job(request: Request, queue: str, job_id: str) -> Page:
        resolved = resolve(queue)
        read = bounded(
            f"finding job {job_id} in {resolved.name}",
            lambda: find_jobs(topology, queue, JobFilter(ids=frozenset({job_id})), limit=1),
            timeout_s,
        )
        job = read.value[1].jobs[0] if read.value and read.value[1].jobs else None
        doc = job.to_json(traceback=True, full=True) if job else {}
        status = 200
        errors = [read.error] if read.error else []
        if read.ok and job is None:
            status = 404
            errors.append(
                f"no job {printable(job_id)} among the first {FIND_RECEIVES * 10} messages of"
                f" {resolved.name} (redriven or deleted since?)"
            )
        payload = ""
        if job is not None:
            if job.envelope is not None:
                payload = json.dumps(job.envelope.data, indent=2, ensure_ascii=False)
                if job.envelope.dataref is not None:
                    payload = f"(claim check: {job.envelope.dataref})"
            else:
                payload = job.body
        return Page(
            "dead_job.html",
            doc,
            {"dlq": resolved, "job": job, "job_id": job_id, "payload": payload},
            errors=errors,
            status=status,
        )

    both("/dead-letters/{queue}/jobs/{job_id}", dead_job)

    @app.get("/dead-letters/{queue}/export.jsonl", include_in_schema=False)
    def export(request: Request, queue: str) -> Response:
        resolved = resolve(queue)
        chosen = job_filter(request.query_params)
        try:
            found = dlq_ops.peek(
                sqs_client(),
                dlq_ops.dlq_url(topology, resolved),
                chosen,
                limit=EXPORT_LIMIT,
                hold_s=HOLD_S,
                max_receives=EXPORT_LIMIT // 10 + 5,
            )
        except ConveyorError as exc:
            raise RefusedError(f"export failed: {describe(exc)}", status=503) from None
        principal = console.principal(request)
        audit(
            principal.name if principal else "?",
            "export",
            queue=resolved.queue,
            jobs=len(found.jobs),
        )
        body = "".join(dlq_ops.export_line(job) + "\n" for job in found.jobs)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={
                "Content-Disposition": f'attachment; filename="{resolved.name}-{stamp}.jsonl"'
            },
        )

    # -- redrive and delete -------------------------------------------------------------

    def selection(form: FormData) -> JobFilter:
        ids = [str(v) for v in form.getlist("job_id") if str(v).strip()]
        return job_filter(form, ids)

    async def preview(request: Request, queue: str, kind: str) -> Response:
        _, form = await console.action(request)
        resolved = resolve(queue)
        chosen = selection(form)
        read = await run_in_threadpool(
            bounded,
            f"selecting jobs in {resolved.name}",
            lambda: find_jobs(topology, queue, chosen, limit=PREVIEW_LIMIT),
            timeout_s * 3,
        )
        found = read.value[1] if read.value else None
        warning = None
        if kind == "redrive" and found is not None:
            unknown = without_handler(topology, resolved.queue, found.jobs)
            if unknown:
                warning = (
                    f"queue '{resolved.queue}' has no handler for {', '.join(unknown)}:"
                    " those jobs will be dead-lettered again"
                )
        return console.render(
            request,
            "preview.html",
            errors=[read.error] if read.error else [],
            kind=kind,
            dlq=resolved,
            found=found,
            chosen=chosen,
            warning=warning,
            limit=PREVIEW_LIMIT,
        )

    @app.post("/dead-letters/{queue}/redrive/preview", include_in_schema=False)
    async def redrive_preview(request: Request, queue: str) -> Response:
        return await preview(request, queue, "redrive")

    @app.post("/dead-letters/{queue}/delete/preview", include_in_schema=False)
    async def delete_preview(request: Request, queue: str) -> Response:
        return await preview(request, queue, "delete")

    def message_ids(form: FormData) -> frozenset[str]:
        ids = frozenset(str(v) for v in form.getlist("message_id") if str(v).strip())
        if not ids:
            raise RefusedError("nothing selected: preview the jobs first", status=400)
        return ids

    @app.post("/dead-letters/{queue}/redrive", include_in_schema=False)
    async def redrive(request: Request, queue: str) -> Response:
        principal, form = await console.action(request)
        resolved = resolve(queue)
        ids = message_ids(form)
        target = dlq_ops.source_target(topology, resolved)
        task = RedriveTask(
            new_task_id(), resolved.queue, resolved.name, target.name, principal.name, len(ids)
        )
        audit(principal.name, "redrive", queue=resolved.queue, jobs=len(ids), task=task.id)

        def run(progress: Callable[[dlq_ops.RedriveResult], None]) -> dlq_ops.RedriveResult:
            sqs = sqs_client()
            url = dlq_ops.dlq_url(topology, resolved)
            destination = dlq_ops.target_url(topology, target)
            found = dlq_ops.peek(
                sqs, url, JobFilter(ids=ids), hold_s=HOLD_S, max_receives=FIND_RECEIVES
            )
            # Exactly the messages previewed (by message id): not one that died since.
            selected = [job for job in found.jobs if job.message_id in ids]
            return dlq_ops.redrive(
                sqs, url, target, destination, selected, hold_s=HOLD_S, on_progress=progress
            )

        def done(finished: RedriveTask) -> None:
            log.info(
                "console.redrive_done",
                who=finished.by,
                queue=finished.queue,
                **{
                    k: v
                    for k, v in finished.to_json().items()
                    if k in ("moved", "failed", "missing", "error", "aborted")
                },
            )

        console.tasks.start(task, run, done)
        return RedirectResponse(f"/dead-letters/{queue}/redrive/{task.id}", status_code=303)

    def redrive_task(request: Request, queue: str, task_id: str) -> Page:
        task = console.tasks.get(task_id)
        if task is None:
            raise RefusedError(
                f"no redrive task {printable(task_id)} (the console restarted?)", 404
            )
        return Page("redrive.html", task.to_json(), {"task": task, "queue": queue})

    both("/dead-letters/{queue}/redrive/{task_id}", redrive_task)

    @app.get("/fragments/redrive/{task_id}", include_in_schema=False)
    def redrive_progress(request: Request, task_id: str) -> Response:
        task = console.tasks.get(task_id)
        if task is None:
            raise RefusedError(f"no redrive task {printable(task_id)}", 404)
        return console.render(request, "_redrive_progress.html", task=task)

    @app.post("/dead-letters/{queue}/delete", include_in_schema=False)
    async def delete(request: Request, queue: str) -> Response:
        principal, form = await console.action(request)
        resolved = resolve(queue)
        ids = message_ids(form)
        audit(principal.name, "delete", queue=resolved.queue, jobs=len(ids))

        def run() -> dlq_ops.DeleteResult:
            sqs = sqs_client()
            url = dlq_ops.dlq_url(topology, resolved)
            found = dlq_ops.peek(
                sqs, url, JobFilter(ids=ids), hold_s=HOLD_S, max_receives=FIND_RECEIVES
            )
            selected = [job for job in found.jobs if job.message_id in ids]
            return dlq_ops.delete_jobs(sqs, url, selected, hold_s=HOLD_S)

        read = await run_in_threadpool(
            bounded, f"deleting from {resolved.name}", run, timeout_s * 6
        )
        result = read.value
        message = (
            f"deleted {result.deleted} of {len(ids)} jobs from {resolved.name}"
            if result is not None
            else "delete failed"
        )
        if result is not None:
            log.info(
                "console.delete_done",
                who=principal.name,
                queue=resolved.queue,
                deleted=result.deleted,
                missing=result.missing,
                failed=result.failed,
            )
        errors = [read.error] if read.error else []
        if result is not None:
            errors += [result.aborted or "", *result.errors]
            if result.missing:
                errors.append(f"{result.missing} selected jobs were no longer in the DLQ")
        return console.render(
            request,
            "message.html",
            title="Delete",
            message=message,
            errors=errors,
            testid="delete-done",
            back=f"/dead-letters/{queue}",
        )

    # -- jobs ---------------------------------------------------------------------------

    def jobs(request: Request) -> Page:
        q = request.query_params.get("q", "").strip()
        if not q:
            return Page("jobs.html", {"query": "", "matches": []}, {"q": ""})
        read = bounded("reading the job ledger", lambda: job_record(topology, q), timeout_s)
        matches: list[dict[str, str]] = []
        errors = [read.error] if read.error else []
        if read.value is not None:
            matches.append({"job_id": q, "via": "job id", "type": read.value.type})
        if deps.find_idempotency_key is not None:
            finder = deps.find_idempotency_key
            keyed = bounded("reading idempotency keys", lambda: finder(q), timeout_s)
            if keyed.error:
                errors.append(keyed.error)
            for scope, job_id in keyed.value or []:
                matches.append(
                    {"job_id": job_id, "via": f"idempotency key of '{scope}'", "type": ""}
                )
        # One job found: its page at once (a person typing an id wants the timeline).
        only = {m["job_id"] for m in matches}
        return Page(
            "jobs.html",
            {"query": q, "matches": matches},
            {"q": q},
            errors=errors,
            redirect=f"/jobs/{quote(only.pop(), safe='')}" if len(only) == 1 else None,
        )

    both("/jobs", jobs)

    def job(request: Request, job_id: str, flash: str | None = None) -> Page:
        read = bounded("reading the job ledger", lambda: job_record(topology, job_id), timeout_s)
        record = read.value
        errors = [read.error] if read.error else []
        status = 200
        if read.ok and record is None:
            status = 404
            recorded = ", ".join(topology.ledger_job_types()) or "none"
            errors.append(
                f"no status recorded for job {printable(job_id)} (unknown id, or a job type"
                f" that does not record status; recorded: {recorded})"
            )
        return Page(
            "job.html",
            record.model_dump(mode="json") if record else {},
            {
                "job_id": job_id,
                "record": record,
                "timeline": timeline(record) if record else {},
                "can_cancel": deps.cancel is not None,
                "flash": flash,
            },
            errors=errors,
            status=status,
        )

    both("/jobs/{job_id}", job)

    @app.post("/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, job_id: str) -> Response:
        principal, _ = await console.action(request)
        if deps.cancel is None:
            raise RefusedError("cancelling is not available in this console", status=400)
        canceller = deps.cancel
        audit(principal.name, "cancel", job=job_id, jobs=1)
        read = await run_in_threadpool(
            bounded,
            "cancelling",
            lambda: canceller(job_id, f"console:{principal.name}"),
            timeout_s,
        )
        flash = read.value.body.get("detail") if read.value else None
        page = await run_in_threadpool(job, request, job_id, str(flash) if flash else None)
        errors = page.errors + ([read.error] if read.error else [])
        return console.render(
            request, page.template, status_code=200, errors=errors, doc=page.doc, **page.context
        )

    # -- pools --------------------------------------------------------------------------

    def pools(request: Request, flash: str | None = None) -> Page:
        backend = deps.backend
        errors: list[str] = []
        states = []
        if backend is None:
            errors.append(deps.backend_error or "no scaling backend")
        else:
            read = bounded(f"reading pools ({deps.backend_name})", backend.pools, timeout_s)
            states = list((read.value or {}).values())
            if read.error:
                errors.append(read.error)
        read_decisions = bounded("reading backlogs", recommendations, timeout_s)
        if read_decisions.error:
            errors.append(read_decisions.error)
        doc = pools_document(deps.backend_name, states)
        doc["recommendations"] = read_decisions.value or []
        state_dir = getattr(backend, "state_dir", None)
        journal = DecisionJournal(state_dir) if isinstance(state_dir, Path) else None
        recent = list(reversed(journal.read()))[:RECENT_DECISIONS] if journal else []
        doc["decisions"] = recent
        notes = sorted({s.note for s in states if s.note})
        return Page(
            "pools.html",
            doc,
            {
                "states": states,
                "notes": notes,
                "flash": flash,
                "recommendations": doc["recommendations"],
                "recent": recent,
                "journal": journal is not None,
            },
            errors=errors,
        )

    def recommendations() -> list[dict[str, Any]]:
        """What the autoscaler's policy recommends now, with its inputs, per pool."""
        reader = BacklogReader(topology)
        out = []
        for name, pool in topology.pools.items():
            backlog = reader.read(name)
            policy = PoolPolicy(name, pool, 0.0)
            out.append(
                {
                    "pool": name,
                    "recommended": policy.recommend(backlog.total),
                    "backlog": backlog.total,
                    "visible": backlog.visible,
                    "in_flight": backlog.in_flight,
                    "target_backlog_per_worker": pool.autoscaling.target_backlog_per_worker,
                    "min_replicas": pool.replicas.min,
                    "max_replicas": pool.replicas.max,
                }
            )
        return out

    both("/pools", pools)

    @app.get("/fragments/pools/{pool}", include_in_schema=False)
    def pool_fragment(request: Request, pool: str) -> Response:
        """One pool's numbers and nodes, polled by the pools page (scaling shows live)."""
        if pool not in topology.pools:
            raise RefusedError(f"unknown pool '{printable(pool)}'", status=404)
        backend = deps.backend
        if backend is None:
            raise RefusedError(deps.backend_error or "no scaling backend", status=503)
        read = bounded(f"reading pool {pool}", lambda: backend.pools([pool]), timeout_s)
        if read.value is None:
            raise RefusedError(read.error or "no answer", status=503)
        state = read.value[pool].to_json(time.time())
        return console.render(request, "_pool.html", state=state)

    @app.post("/pools/{pool}/scale", include_in_schema=False)
    async def scale_pool(request: Request, pool: str) -> Response:
        principal, form = await console.action(request)
        if pool not in topology.pools:
            raise RefusedError(f"unknown pool '{printable(pool)}'", status=404)
        if deps.backend is None:
            raise RefusedError(deps.backend_error or "no scaling backend", status=503)
        backend = deps.backend
        try:
            desired = int(str(form.get("desired", "")).strip())
        except ValueError:
            raise RefusedError("desired must be a whole number", status=400) from None
        try:
            changes = await run_in_threadpool(scale, topology, backend, {pool: desired})
        except ScalingError as exc:
            raise RefusedError(exc.message, status=400 if exc.usage else 503) from None
        change = changes[0]
        audit(principal.name, "scale", pool=pool, before=change.before, after=change.after)
        page = await run_in_threadpool(
            pools, request, f"{pool}: desired {change.before} → {change.after}"
        )
        return console.render(
            request, page.template, errors=page.errors, doc=page.doc, **page.context
        )

    # -- schedules ----------------------------------------------------------------------

    def schedules(request: Request, flash: str | None = None) -> Page:
        if deps.schedules is None:
            return Page(
                "schedules.html",
                {"schedules": []},
                {"rows": [], "flash": flash, "available": False},
            )
        store = deps.schedules
        read = bounded("reading schedules", store.list, timeout_s)
        rows = read.value or []
        return Page(
            "schedules.html",
            {"schedules": rows},
            {"rows": rows, "flash": flash, "available": True},
            errors=[read.error] if read.error else [],
        )

    both("/schedules", schedules)

    @app.post("/schedules/{name}/{operation}", include_in_schema=False)
    async def schedule_action(request: Request, name: str, operation: str) -> Response:
        principal, _ = await console.action(request)
        store = deps.schedules
        if store is None:
            raise RefusedError("schedules are not available in this console", status=400)
        if name not in topology.schedules:
            raise RefusedError(f"unknown schedule '{printable(name)}'", status=404)
        if operation not in ("pause", "resume", "trigger"):
            raise RefusedError(f"unknown operation '{printable(operation)}'", status=404)
        audit(principal.name, operation, schedule=name, jobs=1 if operation == "trigger" else 0)

        def run() -> str:
            if operation == "pause":
                store.pause(name)
                return f"schedule '{name}' paused"
            if operation == "resume":
                store.resume(name)
                return f"schedule '{name}' resumed"
            return f"schedule '{name}' fired: job {store.trigger(name)}"

        read = await run_in_threadpool(bounded, f"{operation} {name}", run, timeout_s)
        page = await run_in_threadpool(schedules, request, read.value)
        return console.render(
            request,
            page.template,
            errors=page.errors + ([read.error] if read.error else []),
            doc=page.doc,
            **page.context,
        )
