"""The capacity model of docs/capacity.md, computed from one benchmark run's JSON.

``python -m benchmarks.capacity RESULTS_JSON [--write docs/capacity.md]``: prints
(or writes between the page's ``<!-- capacity:begin -->`` and ``<!-- capacity:end -->``
markers) the inputs taken from the run, the nodes each pool needs for 1,000 and
10,000 jobs/s, and the AWS requests and dollars per hour. The prices and the
assumptions (node size, headroom, envelope size, ledger writes) are the constants
below: change one, re-run, and the page follows.

What is taken from the run, and why these and not jobs/s: on the embedded emulator
a node's wall-clock throughput is bounded by moto, which shares the cores, so the
model uses what does not depend on the emulator's speed — the worker node's CPU
seconds per job and the requests per job — and, for I/O-bound jobs, the fraction of
the ideal (slots ÷ wait) a node reached, which the emulator can only lower.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Sustained rates the page sizes for, in jobs/s.
RATES = (1_000, 10_000)
#: The node the model counts in: vCPUs, and the share of them it plans to use
#: (headroom for bursts, GC, the heartbeat and ledger threads).
NODE_VCPUS = 2
UTILISATION = 0.7
#: The envelope (JSON, payload included) of a typical job: bytes, for 64 KiB billing.
ENVELOPE_BYTES = 1024
#: Job ledger writes per job (on one queue) when the job type has ``ledger: true``:
#: the producer's ``queued`` put, the worker's ``running`` and outcome updates (each
#: under 1 KB: one write request unit each).
LEDGER_WRITES_PER_JOB = 3
#: List prices, USD, us-east-1, as published by AWS at the time of writing (check
#: the pricing pages before relying on them; free tiers ignored).
REGION = "us-east-1"
SNS_PER_MILLION = 0.50  # standard topic requests (Publish, PublishBatch), per 64 KiB chunk
SQS_PER_MILLION = 0.40  # standard queue requests, first 100 billion a month, per 64 KiB chunk
SQS_FIFO_PER_MILLION = 0.50
DDB_WRITE_PER_MILLION = 0.625  # on-demand write request units
FARGATE_VCPU_HOUR = 0.04048  # Linux/x86, per vCPU-hour
FARGATE_GB_HOUR = 0.004445  # per GB-hour
LAMBDA_PER_MILLION = 0.20  # requests
LAMBDA_GB_SECOND = 0.0000166667  # x86
#: SNS→SQS deliveries are not charged; SNS PublishBatch takes at most 10 messages.
SNS_BATCH = 10
CHUNK_BYTES = 64 * 1024
BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"


@dataclass(frozen=True)
class Inputs:
    """What the model takes from one run (see :func:`inputs`)."""

    run: str
    #: Worker node CPU per job, ms: no-op and 5 ms CPU jobs (prefork, the highest
    #: concurrency run), and 100 ms I/O jobs on each pool.
    node_cpu_ms_noop: float
    node_cpu_ms_cpu: float
    cpu_work_ms: float
    concurrency: int
    api_cpu_ms: float
    publish_batches_per_job: float
    receives_per_job: float
    #: Every other SQS request per job (DeleteMessageBatch, visibility changes).
    other_sqs_per_job: float
    idle_receives_per_min: float
    io_ms: float
    io_concurrency: int
    #: pool -> (node CPU ms per job, fraction of the ideal jobs/s, node RSS MB, node PSS MB)
    io: dict[str, tuple[float, float, float, float]]


def _per_job(phase: dict[str, Any], action: str) -> float:
    jobs = max(int(phase["jobs"]), 1)
    return float(phase["requests_by_action"].get(action, 0)) / jobs


def inputs(doc: dict[str, Any]) -> Inputs:
    """The model's inputs from a benchmark JSON document (:func:`benchmarks.report.build`)."""
    levels = sorted(
        (c for c, figs in doc["by_concurrency"].items() if "noop" in figs.get("conveyor", {})),
        key=int,
    )
    if not levels:
        raise ValueError("the run has no Conveyor throughput figures")
    conveyor = doc["by_concurrency"][levels[-1]]["conveyor"]
    noop, cpu = conveyor["noop"], conveyor["cpu"]
    api_s = sum(v for k, v in noop["cpu_s_by_process"].items() if k.endswith("-api"))
    idle = doc["by_concurrency"][levels[0]]["conveyor"].get("idle", {})
    io = {
        pool: (
            fig["node_cpu_s_per_job"] * 1000,
            fig["vs_ideal"],
            fig["node_peak_rss_mb"],
            fig["node_pss_mb"],
        )
        for pool, fig in doc.get("io", {}).items()
        if "skipped" not in fig
    }
    meta = doc["meta"]
    return Inputs(
        run=(
            f"{meta['started_at']} ({meta['machine']}; 1-minute load average"
            f" {meta['load_average_1m']} at the start"
            + (
                f", {meta['load_average_1m_end']} at the end"
                if "load_average_1m_end" in meta
                else ""
            )
            + ")"
        ),
        node_cpu_ms_noop=noop["node_cpu_s_per_job"] * 1000,
        node_cpu_ms_cpu=cpu["node_cpu_s_per_job"] * 1000,
        cpu_work_ms=float(doc["settings"]["cpu_ms"]),
        concurrency=int(levels[-1]),
        api_cpu_ms=api_s / max(noop["jobs"], 1) * 1000,
        publish_batches_per_job=_per_job(noop, "sns.PublishBatch"),
        receives_per_job=_per_job(noop, "sqs.ReceiveMessage"),
        other_sqs_per_job=sum(
            v
            for k, v in noop["requests_by_action"].items()
            if k.startswith("sqs.") and k != "sqs.ReceiveMessage"
        )
        / max(noop["jobs"], 1),
        idle_receives_per_min=float(idle.get("receives_per_min_per_node", math.nan)),
        io_ms=float(doc["settings"]["io_ms"]),
        io_concurrency=int(doc["settings"]["io_concurrency"]),
        io=io,
    )


#: Pools that run every job in the node's one process: Python code in them uses at
#: most one core (the GIL), whatever the node's vCPUs.
ONE_PROCESS_POOLS = frozenset({"threads", "asyncio", "solo"})
#: The Lambda alternative: memory, and messages per invocation (SQS event source).
LAMBDA_GB = 0.5
LAMBDA_BATCH = 10


def node_jobs_per_s(node_cpu_ms: float, *, slots: int = 0, wait_ms: float = 0.0,
                    vs_ideal: float = 1.0, pool: str = "prefork") -> float:  # fmt: skip
    """What one node sustains: its CPU budget, and for waiting jobs its slots too."""
    cores = min(NODE_VCPUS, 1) if pool in ONE_PROCESS_POOLS else NODE_VCPUS
    by_cpu = cores * UTILISATION * 1000.0 / node_cpu_ms if node_cpu_ms > 0 else math.inf
    if not slots:
        return by_cpu
    return min(by_cpu, slots * 1000.0 / wait_ms * vs_ideal)


def chunks(n_messages: int, envelope_bytes: int = ENVELOPE_BYTES) -> int:
    """Billed requests for one call carrying ``n_messages`` envelopes (64 KiB chunks)."""
    return max(1, math.ceil(n_messages * envelope_bytes / CHUNK_BYTES))


def requests_per_job(i: Inputs) -> dict[str, float]:
    """Billed SNS and SQS requests per job at a backlog, and ledger writes."""
    return {
        "sns": i.publish_batches_per_job * chunks(SNS_BATCH),
        # ReceiveMessage returns up to 10 messages: billed per 64 KiB of them; a
        # DeleteMessageBatch carries receipt handles only (one chunk).
        "sqs": i.receives_per_job * chunks(SNS_BATCH) + i.other_sqs_per_job,
        "ddb_writes": float(LEDGER_WRITES_PER_JOB),
    }


def dollars_per_hour(rate: float, per_job: dict[str, float], *, ledger: bool) -> dict[str, float]:
    """AWS request dollars per hour at ``rate`` jobs/s."""
    hour = rate * 3600 / 1e6  # millions of jobs an hour
    out = {
        "sns": hour * per_job["sns"] * SNS_PER_MILLION,
        "sqs": hour * per_job["sqs"] * SQS_PER_MILLION,
        "ddb": hour * per_job["ddb_writes"] * DDB_WRITE_PER_MILLION if ledger else 0.0,
    }
    out["total"] = sum(out.values())
    return out


def _n(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def render(i: Inputs) -> str:
    """The page's generated part: inputs, nodes, requests and dollars."""
    per_job = requests_per_job(i)
    node_gb = NODE_VCPUS * 2  # a 2:1 GiB-per-vCPU node
    node_usd_h = NODE_VCPUS * FARGATE_VCPU_HOUR + node_gb * FARGATE_GB_HOUR
    lines = [
        f"Generated by `python -m benchmarks.capacity` from the run of {i.run}.",
        "",
        "**Inputs** (from that run; Conveyor's worker node at concurrency"
        f" {i.concurrency}, prefork, unless noted)",
        "",
        "| input | value |",
        "| --- | --- |",
        f"| worker node CPU per no-op job | {i.node_cpu_ms_noop:.2f} ms |",
        f"| worker node CPU per {i.cpu_work_ms:g} ms CPU job | {i.node_cpu_ms_cpu:.2f} ms |",
        f"| producer API CPU per job (batches of 500) | {i.api_cpu_ms:.2f} ms |",
        f"| SNS PublishBatch per job | {i.publish_batches_per_job:.3f} |",
        f"| SQS ReceiveMessage per job | {i.receives_per_job:.3f} |",
        f"| other SQS requests per job (DeleteMessageBatch) | {i.other_sqs_per_job:.3f} |",
        f"| idle ReceiveMessage per queue per minute per node | {_n(i.idle_receives_per_min)} |",
    ]  # fmt: skip
    for pool, (cpu_ms, vs_ideal, rss, pss) in i.io.items():
        lines.append(
            f"| {i.io_ms:g} ms I/O job, {pool} pool at {i.io_concurrency}: node CPU per job,"
            f" share of the ideal jobs/s, node RSS / PSS | {cpu_ms:.2f} ms, {vs_ideal:.2f},"
            f" {rss:,.0f} / {pss:,.0f} MB |"
        )
    lines += [
        "",
        f"**Assumptions**: a node is {NODE_VCPUS} vCPUs planned at {UTILISATION:.0%}"
        f" CPU; a {ENVELOPE_BYTES:,}-byte envelope; {LEDGER_WRITES_PER_JOB} ledger writes"
        f" per job (`ledger: true`); prices: {REGION} list prices (see below).",
        "",
        "**Nodes** for a sustained rate (ceil(rate ÷ per-node jobs/s); a node's jobs/s is"
        " the lower of its CPU budget and, for waiting jobs, slots ÷ wait x the measured"
        " share of the ideal):",
        "",
        "| workload | pool, slots per node | per node, jobs/s"
        + "".join(f" | nodes at {r:,}/s" for r in RATES)
        + " | memory per node |",
        "| --- | --- | --- |" + " --- |" * len(RATES) + " --- |",
    ]
    rows: list[tuple[str, str, float, str]] = []
    jps = node_jobs_per_s(i.node_cpu_ms_cpu)
    rows.append((f"{i.cpu_work_ms:g} ms CPU", f"prefork, {NODE_VCPUS}", jps, ""))
    jps = node_jobs_per_s(i.node_cpu_ms_noop)
    rows.append(("no-op (overhead only)", f"prefork, {NODE_VCPUS}", jps, ""))
    for workload, pool, jps, memory in rows:
        nodes = "".join(
            f" | {math.ceil(r / jps):,} ({_usd(math.ceil(r / jps) * node_usd_h)}/h)" for r in RATES
        )
        lines.append(f"| {workload} | {pool} | {_n(jps)}{nodes} | {memory} |")
    for pool, (cpu_ms, vs_ideal, rss, pss) in i.io.items():
        measured = node_jobs_per_s(
            cpu_ms, slots=i.io_concurrency, wait_ms=i.io_ms, vs_ideal=vs_ideal, pool=pool
        )
        ideal = node_jobs_per_s(cpu_ms, slots=i.io_concurrency, wait_ms=i.io_ms, pool=pool)
        nodes = "".join(
            f" | {math.ceil(r / measured):,} ({_usd(math.ceil(r / measured) * node_usd_h)}/h);"
            f" {math.ceil(r / ideal):,} at the ideal"
            for r in RATES
        )
        lines.append(
            f"| {i.io_ms:g} ms I/O | {pool}, {i.io_concurrency} | {_n(measured)}"
            f" (ideal {_n(ideal)}){nodes} | RSS {rss:,.0f} MB, PSS {pss:,.0f} MB |"
        )
    api_jps = node_jobs_per_s(i.api_cpu_ms)
    lines.append(
        f"| (producer API) | {NODE_VCPUS} vCPUs | {_n(api_jps)}"
        + "".join(
            f" | {math.ceil(r / api_jps):,} ({_usd(math.ceil(r / api_jps) * node_usd_h)}/h)"
            for r in RATES
        )
        + " | |"
    )
    lines += [
        "",
        f"A node as above costs about {_usd(node_usd_h)} an hour on Fargate ({NODE_VCPUS}"
        f" vCPUs, {node_gb} GB at ${FARGATE_VCPU_HOUR}/vCPU-h and ${FARGATE_GB_HOUR}/GB-h).",
        "",
        "**AWS requests and dollars** at a backlog (standard topics and queues; request"
        f" counts are billed per 64 KiB: {SNS_BATCH} envelopes of {ENVELOPE_BYTES:,} bytes"
        f" = {chunks(SNS_BATCH)} chunk(s) per PublishBatch):",
        "",
        "| | per job" + "".join(f" | per hour at {r:,}/s" for r in RATES) + " |",
        "| --- | --- |" + " --- |" * len(RATES),
    ]
    billed = [
        ("SNS requests (PublishBatch)", per_job["sns"], SNS_PER_MILLION),
        ("SQS requests (ReceiveMessage, DeleteMessageBatch)", per_job["sqs"], SQS_PER_MILLION),
        ("DynamoDB write units (ledger on)", per_job["ddb_writes"], DDB_WRITE_PER_MILLION),
    ]
    for label, count, price in billed:
        hourly = "".join(
            f" | {r * 3600 * count / 1e6:,.2f} M = {_usd(r * 3600 * count / 1e6 * price)}"
            for r in RATES
        )
        lines.append(f"| {label} | {count:.3g}{hourly} |")
    for ledger in (False, True):
        totals = "".join(
            f" | {_usd(dollars_per_hour(r, per_job, ledger=ledger)['total'])}" for r in RATES
        )
        lines.append(f"| **total, ledger {'on' if ledger else 'off'}** | {totals} |")
    lines += ["", *_lambda(i)]
    return "\n".join(lines)


def lambda_per_hour(rate: float, job_ms: float) -> tuple[float, float]:
    """(concurrent executions, dollars an hour) for ``rate`` jobs/s of ``job_ms`` each on
    Lambda: batches of :data:`LAMBDA_BATCH` run one after another in an invocation."""
    concurrency = rate * job_ms / 1000.0
    invocations_h = rate * 3600 / LAMBDA_BATCH
    gb_s_h = rate * 3600 * job_ms / 1000.0 * LAMBDA_GB
    return concurrency, invocations_h / 1e6 * LAMBDA_PER_MILLION + gb_s_h * LAMBDA_GB_SECOND


def _lambda(i: Inputs) -> list[str]:
    job_ms = i.io_ms + i.node_cpu_ms_noop  # the wait, and the per-job work around it
    cells = []
    for r in RATES:
        concurrency, usd = lambda_per_hour(r, job_ms)
        cells.append(f" | {concurrency:,.0f} concurrent, {_usd(usd)}/h")
    return [
        f"**Lambda instead of worker nodes** ({i.io_ms:g} ms I/O jobs, {LAMBDA_GB:g} GB,"
        f" batches of {LAMBDA_BATCH}, ${LAMBDA_PER_MILLION}/M requests and"
        f" ${LAMBDA_GB_SECOND:.10f}/GB-s; SQS requests as above):",
        "",
        "| | " + " | ".join(f"at {r:,}/s" for r in RATES) + " |",
        "| --- |" + " --- |" * len(RATES),
        "| Lambda" + "".join(cells) + " |",
    ]


def write(page: Path, generated: str) -> None:
    """Replace the page's generated part (between the markers) with ``generated``."""
    text = page.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{page}: no {BEGIN} ... {END} markers")
    page.write_text(pattern.sub(lambda _: f"{BEGIN}\n{generated}\n{END}", text))


def main(argv: list[str] | None = None) -> int:
    """Print the model for a results JSON, or write it into the page."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__)
    parser.add_argument("results", type=Path, help="a `python -m benchmarks` JSON")
    parser.add_argument("--write", type=Path, help="the page to update (docs/capacity.md)")
    args = parser.parse_args(argv)
    generated = render(inputs(json.loads(args.results.read_text())))
    if args.write:
        write(args.write, generated)
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
