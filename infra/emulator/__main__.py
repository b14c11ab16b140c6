"""``python -m infra.emulator``: run the embedded emulator in the foreground.

Prints ``CONVEYOR_EMULATOR_ENDPOINT=<url>`` as its first stdout line, serves until
SIGTERM/SIGINT, then exits 0. :class:`infra.emulator.EmulatorProcess` runs this.
"""

from __future__ import annotations

import argparse

from infra.emulator.fixes import ENV_VAR, FIXES, parse_fix_selection, selected_fixes_from_env
from infra.emulator.server import DEFAULT_HOST, serve


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run :func:`infra.emulator.server.serve`."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.emulator",
        description="Run moto (SNS/SQS/...) on a loopback port with Conveyor's SQS fixes.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)"
    )
    parser.add_argument(
        "--fixes",
        default=None,
        help=f"'all', 'none' or a comma-separated list of {', '.join(FIXES)} "
        f"(default: ${ENV_VAR}, else all)",
    )
    args = parser.parse_args(argv)
    try:
        fixes = selected_fixes_from_env() if args.fixes is None else parse_fix_selection(args.fixes)
    except ValueError as exc:
        parser.error(str(exc))
    return serve(args.host, args.port, fixes)


if __name__ == "__main__":
    raise SystemExit(main())
