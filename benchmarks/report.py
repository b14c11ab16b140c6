"""Turn the raw results into headline figures, ratios, target checks and a table.

The raw results (:func:`benchmarks.run.run`) are by step: throughput runs by
concurrency then system, the I/O runs by Conveyor execution pool; a step that did
not run is ``{"skipped": reason}``. The targets (:func:`targets`) are issue 17's,
as ratios within one run, each MET, MISS or n/a (with the reason: a pool this
revision lacks, a system not run).
"""

from __future__ import annotations

import math
from typing import Any

#: Issue 17's targets for Conveyor (the first two carried over from issue 8).
MAX_REQUESTS_PER_JOB = 0.35
MAX_IDLE_RECEIVES_PER_MIN = 3.0
MAX_CPU_VS_CELERY = 0.25
MIN_THROUGHPUT_VS_FLOOR = 0.8
MIN_IO_VS_IDEAL = 0.8
MAX_RSS_VS_PREFORK = 0.25
#: Issue 8's latency targets, still checked.
MAX_P50_S = 0.100
MAX_P99_S = 1.0

EMULATOR_LIMIT = (
    "moto's SQS (even with Conveyor's fixes) does work per call that grows with the "
    "queue's backlog; throughput phases keep at most `window` jobs waiting (sent minus "
    "started), where the fixed emulator measured flat up to ~5,000 queued. The emulator "
    "shares the machine's cores with the clients, so wall-clock figures (jobs/s, latency) "
    "are bounded by it too; request counts and client CPU seconds are not."
)


#: A 1-minute load average above this (per machine, 2 cores here) means other work ran.
LOADED_MACHINE = 1.0


def _load(value: object) -> float:
    """A load average from the run's metadata (0 when it was not recorded)."""
    return float(value) if isinstance(value, int | float) else 0.0


def _aws(requests: dict[str, int]) -> int:
    return sum(v for k, v in requests.items() if k.split(".", 1)[0] in ("sqs", "sns"))


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _per_job(phase: dict[str, Any], work_s: float) -> dict[str, Any]:
    jobs = max(phase["jobs"], 1)
    cpu_s = (phase["producer_cpu_s"] + phase["consumer_cpu_s"]) / jobs
    client = _aws(phase["requests"])
    emulator = _aws(phase["emulator_requests"])
    return {
        "jobs": phase["jobs"],
        "jobs_per_s": phase["jobs_per_s"],
        "requests_per_job": round(client / jobs, 4),
        "requests_by_action": phase["requests"],
        "emulator_requests_per_job": round(emulator / jobs, 4),
        "emulator_requests_by_action": phase["emulator_requests"],
        "cpu_s_per_job": round(cpu_s, 6),
        #: What the system adds to the job's own CPU time.
        "overhead_cpu_s_per_job": round(cpu_s - work_s, 6),
        "cpu_s_by_process": phase.get("cpu_s_by_process", {}),
        #: The worker node's share (its process tree; no API, no producer).
        "node_cpu_s_per_job": round(
            sum(v for k, v in phase.get("cpu_s_by_process", {}).items() if "worker" in k) / jobs,
            6,
        ),
        "producer_cpu_s_per_job": round(phase["producer_cpu_s"] / jobs, 6),
        "consumer_cpu_s_per_job": round(phase["consumer_cpu_s"] / jobs, 6),
    }


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def headline(result: dict[str, Any], cpu_ms: float) -> dict[str, Any]:
    """The figures of one system at one concurrency (the phases it ran; ``cpu_ms``:
    the CPU workload's work per job)."""
    out: dict[str, Any] = {"concurrency": result.get("concurrency")}
    if "noop" in result:
        out["noop"] = _per_job(result["noop"], 0.0)
    if "cpu" in result:
        out["cpu"] = _per_job(result["cpu"], cpu_ms / 1000.0)
    if "light" in result:
        latency = result["light"]["latency_s"]
        out["light_load"] = {
            "jobs": result["light"]["jobs"],
            "latency_p50_s": round(_quantile(latency, 0.50), 4),
            "latency_p99_s": round(_quantile(latency, 0.99), 4),
            "requests_per_job": round(_aws(result["light"]["requests"]) / max(len(latency), 1), 3),
        }
    if "idle" in result:
        out["idle"] = _idle(result)
    out["peak_rss_mb"] = _mb(result["peak_rss_bytes"])
    out["node_peak_rss_mb"] = _mb(result.get("peak_worker_rss_bytes", 0))
    return out


def _idle(result: dict[str, Any]) -> dict[str, Any]:
    idle = result["idle"]
    minutes = idle["window_s"] / 60.0
    receives = idle["requests"].get("sqs.ReceiveMessage", 0)
    return {
        "window_s": idle["window_s"],
        "consumer_nodes": result["consumer_nodes"],
        "receives_per_min_per_node": round(receives / minutes / result["consumer_nodes"], 2),
        "requests_per_min": round(_aws(idle["requests"]) / minutes, 2),
        "requests_by_action": idle["requests"],
        "emulator_requests_by_action": idle["emulator_requests"],
    }


def io_headline(result: dict[str, Any], io_ms: float) -> dict[str, Any]:
    """The figures of one I/O run (one Conveyor node on one execution pool)."""
    if "skipped" in result:
        return {"skipped": result["skipped"]}
    concurrency = result["concurrency"]
    ideal = concurrency * 1000.0 / io_ms
    phase = _per_job(result["io"], 0.0)
    idle = {"idle": _idle(result)} if "idle" in result else {}
    return {
        **idle,
        "worker_pool": result["worker_pool"],
        "concurrency": concurrency,
        "io_ms": io_ms,
        "ideal_jobs_per_s": round(ideal, 1),
        **phase,
        "vs_ideal": _ratio(phase["jobs_per_s"], ideal),
        #: The node's process tree (a prefork node's children included), API excluded.
        "node_peak_rss_mb": _mb(result["peak_worker_rss_bytes"]),
        "node_pss_mb": _mb(result.get("worker_pss_bytes", 0)),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _get(fig: dict[str, Any] | None, section: str, key: str) -> Any:
    if fig is None:
        return None
    part = fig.get(section) if section else fig
    return part.get(key) if isinstance(part, dict) else None


def ratios(mine: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Conveyor's headline figures divided by another system's (where both have them)."""
    out: dict[str, Any] = {}
    for workload in ("noop", "cpu"):
        for key in ("jobs_per_s", "requests_per_job", "cpu_s_per_job", "overhead_cpu_s_per_job"):
            out[f"{workload}.{key}"] = _ratio(_get(mine, workload, key), _get(other, workload, key))
    for key in ("latency_p50_s", "latency_p99_s"):
        out[f"light_load.{key}"] = _ratio(
            _get(mine, "light_load", key), _get(other, "light_load", key)
        )
    key = "receives_per_min_per_node"
    out[f"idle.{key}"] = _ratio(_get(mine, "idle", key), _get(other, "idle", key))
    for key in ("peak_rss_mb", "node_peak_rss_mb"):
        out[key] = _ratio(mine.get(key), other.get(key))
    return out


def _why(figures: dict[str, Any], *systems: str) -> str:
    """Why a row has no value: the first of ``systems`` not run or skipped."""
    for name in systems:
        fig = figures.get(name)
        if fig is None:
            return f"{name} not run"
        if "skipped" in fig:
            return str(fig["skipped"])
    return "no figure"


def targets(by_concurrency: dict[str, dict[str, Any]], io: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's targets (and issue 8's latency ones), each MET, MISS or n/a.

    ``by_concurrency``: ``{concurrency: {system: headline}}`` (the first
    concurrency, lowest, is the one with idle and latency figures); ``io``:
    ``{worker_pool: io_headline}``. A row whose inputs are missing (a system or a
    pool not run, a skipped step) is n/a with the reason, never MET.
    """
    rows: list[tuple[str, float | None, str, float, str]] = []
    levels = sorted(by_concurrency, key=int)
    low = by_concurrency[levels[0]] if levels else {}

    def vs_raw(level: str, workload: str, label: str) -> None:
        figs = {k: v for k, v in by_concurrency.get(level, {}).items() if "skipped" not in v}
        value = _ratio(
            _get(figs.get("conveyor"), workload, "jobs_per_s"),
            _get(figs.get("raw"), workload, "jobs_per_s"),
        )
        why = _why(by_concurrency.get(level, {}), "conveyor", "raw")
        if level not in by_concurrency:
            why = f"concurrency {level} not run"
        rows.append((label, value, ">=", MIN_THROUGHPUT_VS_FLOOR, why))

    vs_raw("2", "noop", "no-op jobs/s ÷ raw loop, concurrency 2")
    vs_raw("8", "noop", "no-op jobs/s ÷ raw loop, concurrency 8")
    vs_raw("2", "cpu", "5 ms CPU jobs/s ÷ raw loop, concurrency 2")
    for pool in ("threads", "asyncio"):
        fig = io.get(pool)
        value = _get(fig, "", "vs_ideal")
        ideal = _get(fig, "", "ideal_jobs_per_s")
        label = f"100 ms I/O jobs/s, concurrency 32, {pool} ÷ ideal {ideal or 320:g}/s"
        rows.append((label, value, ">=", MIN_IO_VS_IDEAL, _why(io, pool)))
    prefork_rss = _get(io.get("prefork"), "", "node_peak_rss_mb")
    for pool in ("threads", "asyncio"):
        value = _ratio(_get(io.get(pool), "", "node_peak_rss_mb"), prefork_rss)
        label = f"node RSS, concurrency 32: {pool} ÷ prefork"
        rows.append((label, value, "<=", MAX_RSS_VS_PREFORK, _why(io, pool, "prefork")))
    conveyor, celery = low.get("conveyor"), low.get("celery")
    first = levels[0] if levels else "2"
    value = _ratio(_get(conveyor, "noop", "cpu_s_per_job"), _get(celery, "noop", "cpu_s_per_job"))
    rows.append(
        (
            f"client CPU per no-op job ÷ vanilla Celery's, concurrency {first}",
            value,
            "<=",
            MAX_CPU_VS_CELERY,
            _why(low, "conveyor", "celery"),
        )
    )
    # The worst of every Conveyor phase run at a backlog (each concurrency, each pool).
    phases = [
        (f"{w} c{level}", _get(figs.get("conveyor"), w, "requests_per_job"))
        for level, figs in sorted(by_concurrency.items(), key=lambda kv: int(kv[0]))
        for w in ("noop", "cpu")
    ]
    phases += [(f"io {pool}", _get(fig, "", "requests_per_job")) for pool, fig in io.items()]
    measured = [(v, where) for where, v in phases if v is not None]
    worst = max(measured, key=lambda m: m[0]) if measured else None
    rows.append(
        (
            "SNS+SQS requests per job at backlog" + (f" (worst: {worst[1]})" if worst else ""),
            worst[0] if worst else None,
            "<=",
            MAX_REQUESTS_PER_JOB,
            _why(low, "conveyor"),
        )
    )
    # The worst of every Conveyor node measured idle (prefork at the first
    # concurrency, and the other pools before their I/O phase).
    idles = [(f"prefork c{first}", _get(conveyor, "idle", "receives_per_min_per_node"))]
    idles += [(pool, _get(fig, "idle", "receives_per_min_per_node")) for pool, fig in io.items()]
    measured_idle = [(v, where) for where, v in idles if v is not None]
    worst_idle = max(measured_idle, key=lambda m: m[0]) if measured_idle else None
    rows.append(
        (
            "idle ReceiveMessage per queue per minute per node"
            + (f" (worst: {worst_idle[1]})" if worst_idle and len(measured_idle) > 1 else ""),
            worst_idle[0] if worst_idle else None,
            "<=",
            MAX_IDLE_RECEIVES_PER_MIN,
            _why(low, "conveyor"),
        )
    )
    for q, limit in (("p50", MAX_P50_S), ("p99", MAX_P99_S)):
        value = _get(conveyor, "light_load", f"latency_{q}_s")
        label = f"(issue 8) enqueue->start {q} at light load, s"
        rows.append((label, value, "<=", limit, _why(low, "conveyor")))
    return [_verdict(*row) for row in rows]


def _verdict(name: str, value: float | None, op: str, limit: float, why: str) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {
            "target": name,
            "value": None,
            "limit": f"{op} {limit:g}",
            "met": None,
            "verdict": "n/a",
            "why": why or "no figure",
        }
    met = value <= limit if op == "<=" else value >= limit
    return {
        "target": name,
        "value": value,
        "limit": f"{op} {limit:g}",
        "met": met,
        "verdict": "MET" if met else "MISS",
    }


def build(
    results: dict[str, Any], settings: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Any]:
    """The benchmark's JSON document."""
    by_concurrency = {
        level: {
            name: (
                {"skipped": result["skipped"]}
                if "skipped" in result
                else headline(result, settings["cpu_ms"])
            )
            for name, result in systems.items()
        }
        for level, systems in results.get("throughput", {}).items()
    }
    io = {pool: io_headline(r, settings["io_ms"]) for pool, r in results.get("io", {}).items()}
    prefork = io.get("prefork", {})
    for fig in io.values():
        if "skipped" not in fig and "skipped" not in prefork:
            fig["rss_vs_prefork"] = _ratio(fig["node_peak_rss_mb"], prefork.get("node_peak_rss_mb"))
            fig["pss_vs_prefork"] = _ratio(fig["node_pss_mb"], prefork.get("node_pss_mb"))
    levels = sorted(by_concurrency, key=int)
    doc: dict[str, Any] = {
        "meta": meta,
        "settings": settings,
        "emulator_limit": EMULATOR_LIMIT,
        #: The first (lowest) concurrency's figures, with idle and latency.
        "systems": by_concurrency[levels[0]] if levels else {},
        "by_concurrency": by_concurrency,
        "io": io,
        "ratios": {},
        "targets": targets(by_concurrency, io),
        "raw": results,
    }
    for level in levels:
        figs = by_concurrency[level]
        ratios_here: dict[str, Any] = {}
        if "conveyor" in figs and "skipped" not in figs["conveyor"]:
            for other in ("celery", "raw"):
                if other in figs and "skipped" not in figs[other]:
                    ratios_here[f"conveyor/{other}"] = ratios(figs["conveyor"], figs[other])
            if "conveyor_otel" in figs and "skipped" not in figs["conveyor_otel"]:
                # What tracing costs: Conveyor with its spans exported over Conveyor without.
                ratios_here["conveyor_otel/conveyor"] = ratios(
                    figs["conveyor_otel"], figs["conveyor"]
                )
        doc["ratios"][level] = ratios_here
    return doc


#: (label, section, key, scale): scale turns seconds into the label's milliseconds.
_ROWS: list[tuple[str, str, str, float]] = [
    ("jobs/s (no-op)", "noop", "jobs_per_s", 1),
    ("jobs/s (5 ms CPU)", "cpu", "jobs_per_s", 1),
    ("SNS+SQS requests/job (no-op)", "noop", "requests_per_job", 1),
    ("  emulator's count", "noop", "emulator_requests_per_job", 1),
    ("SNS+SQS requests/job (5 ms CPU)", "cpu", "requests_per_job", 1),
    ("client CPU ms/job (no-op)", "noop", "cpu_s_per_job", 1000),
    ("client CPU ms/job (5 ms CPU)", "cpu", "cpu_s_per_job", 1000),
    ("  of which beyond the 5 ms", "cpu", "overhead_cpu_s_per_job", 1000),
    ("worker node CPU ms/job (no-op)", "noop", "node_cpu_s_per_job", 1000),
    ("worker node CPU ms/job (5 ms CPU)", "cpu", "node_cpu_s_per_job", 1000),
    ("enqueue->start p50 ms (light)", "light_load", "latency_p50_s", 1000),
    ("enqueue->start p99 ms (light)", "light_load", "latency_p99_s", 1000),
    ("idle receives/min/node", "idle", "receives_per_min_per_node", 1),
    ("peak RSS MB (consumers+API)", "", "peak_rss_mb", 1),
    ("peak RSS MB (worker nodes)", "", "node_peak_rss_mb", 1),
]

#: (label, key, scale) of the I/O table.
_IO_ROWS: list[tuple[str, str, str, float]] = [
    ("idle receives/min/node", "idle", "receives_per_min_per_node", 1),
    ("jobs/s", "", "jobs_per_s", 1),
    ("  ÷ ideal", "", "vs_ideal", 1),
    ("SNS+SQS requests/job", "", "requests_per_job", 1),
    ("client CPU ms/job", "", "cpu_s_per_job", 1000),
    ("worker node CPU ms/job", "", "node_cpu_s_per_job", 1000),
    ("node peak RSS MB", "", "node_peak_rss_mb", 1),
    ("  ÷ prefork", "", "rss_vs_prefork", 1),
    ("node PSS MB (after the phase)", "", "node_pss_mb", 1),
    ("  ÷ prefork", "", "pss_vs_prefork", 1),
]


def _fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _cell(value: Any, scale: float, missing: str = "-") -> str:
    return _fmt(value * scale) if isinstance(value, float | int) else missing


def _align(lines: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in lines
    ]


def _throughput_table(doc: dict[str, Any], level: str) -> list[str]:
    figs = doc["by_concurrency"][level]
    systems = [name for name, fig in figs.items() if "skipped" not in fig]
    ratios_here = doc["ratios"].get(level, {})
    heads = [
        f"concurrency {level}",
        *systems,
        *(k.replace("conveyor/", "conv/") for k in ratios_here),
    ]
    lines = [heads]
    for label, section, key, scale in _ROWS:
        values = [_get(figs[name], section, key) for name in systems]
        if all(v is None for v in values):
            continue  # a phase this concurrency did not run (idle, latency)
        row = [label, *(_cell(v, scale) for v in values)]
        for ratio in ratios_here.values():
            r = ratio.get(f"{section}.{key}" if section else key)
            row.append("" if r is None else f"{r:.2f}")
        lines.append(row)
    return _align(lines)


def _io_table(doc: dict[str, Any]) -> list[str]:
    io = doc["io"]
    s = doc["settings"]
    pools = list(io)
    head = f"{s['io_ms']:g} ms I/O, concurrency {s['io_concurrency']}, Conveyor"
    lines = [[head, *pools]]
    for label, section, key, scale in _IO_ROWS:
        row = [label]
        for pool in pools:
            missing = "n/a" if "skipped" in io[pool] else "-"
            row.append(_cell(_get(io[pool], section, key), scale, missing))
        lines.append(row)
    out = _align(lines)
    for pool in pools:
        if "skipped" in io[pool]:
            out.append(f"{pool}: n/a ({io[pool]['skipped']})")
    return out


def _target_value(t: dict[str, Any]) -> str:
    if t["verdict"] == "n/a":
        return f"n/a ({t['why']})"
    return f"{t['value']:g}"


def targets_table(doc: dict[str, Any]) -> list[str]:
    """Issue 17's target table: verdict, measure, value, target."""
    lines = [["", "target (issue 17)", "this run", "target"]]
    for t in doc["targets"]:
        lines.append([t["verdict"], t["target"], _target_value(t), t["limit"]])
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    return [
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
        for r in lines
    ]


def table(doc: dict[str, Any]) -> str:
    """The text tables: throughput per concurrency, the I/O workload, the targets."""
    s, meta = doc["settings"], doc["meta"]
    text = [
        f"N = {s['n']} jobs per throughput phase, {s['io_n']} per I/O phase;"
        f" 1-minute load average {meta.get('load_average_1m', '?')} at the start,"
        f" {meta.get('load_average_1m_end', '?')} at the end"
        f" ({meta.get('machine', '?')})",
        "",
    ]
    for level in sorted(doc["by_concurrency"], key=int):
        text += [*_throughput_table(doc, level), ""]
    if doc["io"]:
        text += [*_io_table(doc), ""]
    text += targets_table(doc)
    return "\n".join(text)


NOTES = """\
Notes:
- Request counts are client-side (a botocore `before-sign` hook in every producer,
  API and worker process, retries included) and cross-checked against the emulator's
  own record of the requests it served (moto's request recorder); they depend on N,
  the window and the concurrency, not on the machine's speed.
- Client CPU seconds per job are counted per process (psutil, user + system) over the
  phase: worker processes and their pool children, Conveyor's API, and the producer
  process's enqueue loop; never the emulator. They are meaningful on a busy machine.
- Wall-clock figures (jobs/s, latency) are bounded by the emulator, which shares the
  cores with the clients, and by whatever else runs on the machine: compare them only
  within one run.
- The raw loop at concurrency C is C consumer processes, each ReceiveMessage(10) →
  run the batch → DeleteMessageBatch (at 2 and at 8 alike); Celery and Conveyor run
  one node of C slots.
- The I/O workload: each job waits (time.sleep; asyncio.sleep on the asyncio pool, whose
  handler is `async def`), so a node of C slots can at best run C / wait jobs/s (320/s
  at 32 x 100 ms). Its jobs/s runs from the first enqueue to the last job's end.
- Node RSS is the sum over the worker node's processes (a prefork node's children
  included; API and producer excluded), peak over the run: pages shared by prefork
  children count once per child, an upper bound. PSS (after the I/O phase) divides
  shared pages among the processes sharing them.
- Vanilla Celery runs kombu's SQS transport with DLQ-friendly settings
  (late acks, prefetch 1 per process), kombu's 10 s long poll, and a 0.1 s polling
  interval: with kombu's default of 1 s a node whose prefetch slots are full waits
  1 s before it may poll again (~2-3 jobs/s at concurrency 2).
"""


def markdown(doc: dict[str, Any], command: str) -> str:
    """benchmarks/RESULTS.md for ``doc``: machine, versions, command, tables, targets."""
    meta, s = doc["meta"], doc["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    levels = " and ".join(str(c) for c in s["concurrencies"])
    lines = [
        "# Benchmark results",
        "",
        f"One run of `{command}` on {meta['started_at']}, {meta.get('duration_s', '?')} s in all."
        " To re-run: `make bench` (JSON"
        " in .conveyor/bench/results.json, this page in .conveyor/bench/RESULTS.md), or"
        " `python -m benchmarks --help` for N, the window, the concurrency and the phases.",
        "",
        f"- Machine: {meta['machine']}, Python {meta['python']}; 1-minute load average"
        f" {meta['load_average_1m']} at the start, {meta.get('load_average_1m_end', '?')} at the"
        " end of the measured systems"
        # Above one runnable process per core, something else shared the machine.
        + (
            " (other work was running: the wall-clock figures are noisy)."
            if max(_load(meta.get("load_average_1m")), _load(meta.get("load_average_1m_end")))
            > LOADED_MACHINE
            else " (a quiet machine)."
        ),
        f"- Versions: {versions}.",
        f"- Workload: N = {s['n']} jobs per throughput phase (no-op, then {s['cpu_ms']:g} ms of"
        f" CPU each), at most {s['window']} waiting; concurrency {levels} per system;"
        f" {s['latency_jobs']} single jobs at {s['latency_rate']:g}/s for latency and"
        f" {s['idle_s']:g} s idle (at concurrency {s['concurrencies'][0]}, and each"
        " non-prefork I/O node before its I/O phase);"
        f" {s['io_n']} jobs of {s['io_ms']:g} ms I/O on one Conveyor node of"
        f" {s['io_concurrency']} per pool ({', '.join(s['io_pools'])}).",
        f"- Emulator: {doc['emulator_limit']}",
        "",
        "```",
        table(doc),
        "```",
        "",
        "SNS+SQS requests by action, no-op phase at concurrency"
        f" {s['concurrencies'][0]} (client-side count; the emulator's is the same unless noted):",
        "",
    ]
    for name, fig in doc["systems"].items():
        if "noop" not in fig:
            continue
        client, emulator = (
            fig["noop"]["requests_by_action"],
            fig["noop"]["emulator_requests_by_action"],
        )
        same = "" if _aws_only(client) == _aws_only(emulator) else f" (emulator: {emulator})"
        lines.append(f"- {name}: {client}{same}")
    lines += ["", NOTES]
    return "\n".join(lines)


def _aws_only(requests: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in requests.items() if k.split(".", 1)[0] in ("sqs", "sns")}
