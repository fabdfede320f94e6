"""`plcert gc [--dry-run]`: apply the retention policy now (what the janitor does hourly).

Deletes the jobs that finished more than ``PLCERT_RETENTION_DAYS`` days ago, with their files
that no kept job shares, and the files of deleted jobs not yet purged
(:mod:`service.store.retention`). Prints one line per job removed and a summary; ``--dry-run``
prints what would be removed and writes nothing. Uses the configured job store and data folder,
like ``plcert keys``. Exit codes: 0 done (also when nothing was due), 2 bad configuration.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli import app
from service.cli.keys import _fail, _open_store, _when


@app.command("gc")
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be removed; change nothing.")
    ] = False,
) -> None:
    """Delete finished jobs older than PLCERT_RETENTION_DAYS and their files, now."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.config import ConfigError, get_settings
    from service.store.artifacts import ArtifactStore
    from service.store.retention import expire_jobs, plan_expiry

    try:
        settings = get_settings()
    except ConfigError as exc:
        _fail(str(exc))
    days = float(settings.retention_days)
    if days <= 0:
        typer.echo("retention is off (PLCERT_RETENTION_DAYS=0): nothing removed")
        return
    store = _open_store()
    artifacts = ArtifactStore(settings.artifacts_dir)
    try:
        run = plan_expiry if dry_run else expire_jobs
        result = run(store, artifacts, retention_days=days)
    except (OSError, SQLAlchemyError) as exc:
        _fail(f"garbage collection stopped: {type(exc).__name__}: {exc}")
    finally:
        store.dispose()
    verb = "would remove" if dry_run else "removed"
    for job in result.jobs:
        typer.echo(
            f"{verb} job {job.id} (tenant {job.tenant!r}, {job.status}, "
            f"finished {_when(job.finished_at)})"
        )
    for ref in result.files:
        typer.echo(f"{verb} file {ref}")
    typer.echo(
        f"{'dry run: ' if dry_run else ''}{verb} {len(result.jobs)} jobs that finished before "
        f"{_when(result.cutoff)} (PLCERT_RETENTION_DAYS={days:g}) and {len(result.files)} files"
    )
