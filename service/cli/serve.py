"""`plcert serve` (API + embedded worker) and `plcert worker` (a Celery worker).

``plcert serve`` needs no Redis and no PostgreSQL: by default it keeps the SQLite job store, the
artifacts and a ``filesystem://`` broker under ``PLCERT_DATA_DIR`` (a folder in the user's data
directory). It migrates the store, starts one worker as a supervised child process, sweeps for
orphaned jobs in a background thread, and serves the API in the foreground. Ctrl-C or SIGTERM
stops the API and then the worker (warm shutdown; after a grace period, a kill).

With no API key configured the service refuses any address but a loopback one.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

from service.cli import app

EXIT_BAD_USAGE = 2


def _settings_or_exit() -> object:
    from service.config import ConfigError, get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_USAGE) from None


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless API keys are set).")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers_concurrency: Annotated[
        int, typer.Option(min=0, help="Jobs run at once by the embedded worker (0: no worker).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve the HTTP API with an embedded worker (SQLite + filesystem broker by default)."""
    import uvicorn

    from service.config import ConfigError, Settings, check_bind_host
    from service.logging import configure_logging
    from service.store.jobs import JobStore

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    configure_logging(log_level.upper(), json_lines=settings.log_json)
    settings.ensure_dirs()
    store = JobStore(settings.resolved_database_url)
    store.migrate()
    try:
        check_bind_host(settings, host, stored_keys=store.has_api_keys())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_USAGE) from None
    typer.echo(
        f"plcert: data in {settings.data_dir}, job store {_redact(settings.resolved_database_url)}"
        f", broker {_redact(settings.broker_url)}",
        err=True,
    )

    from service.jobs_dispatch import enqueue
    from worker.embedded import EmbeddedWorker
    from worker.janitor import Janitor

    env = dict(os.environ)
    env["PLCERT_DATA_DIR"] = str(settings.data_dir)
    env.setdefault("PLCERT_LOG_LEVEL", log_level.upper())
    embedded = None
    if workers_concurrency > 0:
        embedded = EmbeddedWorker(
            queues=[settings.queue_cpu, settings.queue_gpu, settings.queue_webhooks],
            concurrency=workers_concurrency,
            pool="prefork",
            loglevel=log_level.upper(),
            env=env,
        ).start()
    janitor = Janitor(store, settings, lambda job: enqueue(job, settings)).start()
    try:
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=log_level.lower(),
            log_config=None,
        )
    finally:
        janitor.stop()
        if embedded is not None:
            embedded.stop()


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues (default: PLCERT_QUEUE_CPU and PLCERT_QUEUE_WEBHOOKS)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    pool: Annotated[
        Literal["prefork", "solo"], typer.Option(help="prefork (CPU) or solo (GPU workers).")
    ] = "prefork",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a Celery worker on the configured broker (Redis when PLCERT_BROKER_URL is set)."""
    from service.config import Settings
    from service.logging import configure_logging

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    configure_logging(log_level.upper(), json_lines=settings.log_json)
    default = f"{settings.queue_cpu},{settings.queue_webhooks}"
    names = [q.strip() for q in (queues or default).split(",") if q.strip()]
    if not names:
        typer.echo("error: --queues names no queue", err=True)
        raise typer.Exit(EXIT_BAD_USAGE)
    from worker.embedded import run_worker

    run_worker(queues=names, concurrency=concurrency, pool=pool, loglevel=log_level.upper())


def _redact(url: str) -> str:
    """The URL without credentials (``user:password@`` removed)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
