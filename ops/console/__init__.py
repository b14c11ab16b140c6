"""The web console (``conveyor console``): server-rendered pages over the DLQ, scaling and
ledger code of :mod:`ops` and :mod:`infra`, for people who would otherwise open Flower.

- :mod:`~ops.console.app` builds the FastAPI app (sessions, CSRF, the routes);
- :mod:`~ops.console.deps` is what the composition layer (``conveyor/cli/console.py``)
  hands in: the key check, and the job and schedule actions only :mod:`producers` has;
- :mod:`~ops.console.session` signs session cookies and CSRF tokens;
- :mod:`~ops.console.bounded` bounds every AWS read by a deadline (a slow AWS gives a
  page with an error banner, never a hung request or a 500);
- :mod:`~ops.console.sampler` keeps an hour of queue depths and job counts in memory
  for the overview's charts and attention items; :mod:`~ops.console.charts` draws them;
- :mod:`~ops.console.views` gathers what each page shows (the same functions and JSON
  documents as the CLI's ``--json``); :mod:`~ops.console.tasks` runs redrives in the
  background so a page can poll their progress.

No JavaScript build step and no CDN: the templates and static files (htmx, vendored
unmodified, and one stylesheet) ship in the package.
"""
