"""The producer process of one phase: enqueue N jobs through one system's enqueue path.

``python -m benchmarks.produce SYSTEM CONFIG_JSON --n N --cpu-ms C [--io-ms I] [--window W]
[--rate R] [--batch B] [--base K]``. With a window, it never lets more than W jobs
wait (sent minus started, from the handlers' record files): the emulator's cost per
call grows with the backlog, so an unbounded backlog would measure moto, not the
system. Prints one JSON line: the CPU seconds its enqueue loop used (not its start-up),
the wall time and the number of jobs sent.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks import jobs
from benchmarks.systems import load

#: How long to wait before looking again when the window is full.
WINDOW_POLL_S = 0.005


def main() -> None:
    """Parse the arguments and run the enqueue loop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("system")
    parser.add_argument("config")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--cpu-ms", type=float, default=0.0)
    parser.add_argument("--io-ms", type=float, default=0.0, help="each job waits this long")
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="jobs/s; 0: as fast as allowed")
    parser.add_argument("--batch", type=int, default=0, help="jobs per call; 0: the system's")
    parser.add_argument("--base", type=int, default=0, help="jobs already recorded")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    max_batch, enqueue = load(args.system).enqueuer(config)
    batch = args.batch or max_batch
    records = Path(os.environ[jobs.RECORDS_ENV])
    cpu0, wall0 = time.process_time(), time.monotonic()
    sent = 0
    while sent < args.n:
        room = args.n - sent
        if args.window:
            free = args.window - (sent - (jobs.finished(records) - args.base))
            # Whole calls only (the last one excepted), and for batch APIs half a window
            # at a time: a window that opens a few jobs at a time must not turn big
            # batches into many small ones.
            unit = batch if batch <= 10 else max(10, min(batch, args.window // 2) // 10 * 10)
            room = room if room <= free and room < unit else min(room, free // unit * unit)
            if room <= 0:
                time.sleep(WINDOW_POLL_S)
                continue
        # Send at most a few batches between looks at the window.
        chunk = min(room, batch * 5)
        for start in range(0, chunk, batch):
            count = min(batch, chunk - start)
            enqueue([jobs.job_body(args.cpu_ms, args.io_ms) for _ in range(count)])
            sent += count
            if args.rate:
                pause_s = wall0 + sent / args.rate - time.monotonic()
                if pause_s > 0:
                    time.sleep(pause_s)  # pacing the light-load phase
    out = {"cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - wall0, "sent": sent}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
