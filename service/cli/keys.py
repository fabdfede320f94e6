"""`plcert keys create|list|revoke`: API keys stored in the job store's ``api_keys`` table;
`plcert keys webhook-secret TENANT [--rotate]`: the tenant's webhook signing secret.

Keys work beside those of ``PLCERT_API_KEYS`` (``service.deps.get_tenant`` checks both). Only
the SHA-256 of a key is stored, so ``create`` prints the key once and nothing can show it
again. A key is named by its *key id*, the first 12 hex digits of that hash; ``revoke`` takes
the id or any unambiguous prefix of the hash (at least :data:`MIN_PREFIX` digits).

The commands use the configured job store (``PLCERT_DATABASE_URL``, else the SQLite file in
``PLCERT_DATA_DIR``) and migrate it first. Exit codes: 0 done, 2 bad input or configuration.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from service.cli import app

if TYPE_CHECKING:
    from service.store.jobs import JobStore

EXIT_BAD_INPUT = 2
MIN_PREFIX = 6
"""Shortest hash prefix ``revoke`` accepts (a typo should not match a key by chance)."""

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
"""Tenant names: 1 to 128 characters (the column's width) that need no quoting anywhere."""

keys_app = typer.Typer(
    name="keys",
    help="Create, list and revoke API keys stored in the job store.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _open_store() -> JobStore:
    """The migrated job store of the configured settings, or exit 2 with the reason."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.cli.serve import _redact
    from service.config import ConfigError, get_settings
    from service.store.jobs import JobStore

    try:
        settings = get_settings()
    except ConfigError as exc:
        _fail(str(exc))
    url = settings.resolved_database_url
    try:
        if not settings.database_url:
            settings.ensure_dirs()
        store = JobStore(url)
        store.migrate()
    except (OSError, SQLAlchemyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(f"cannot open the job store {_redact(url)}: {first_line}")
    return store


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else "-"


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant the key acts for (e.g. acme).")],
) -> None:
    """Create a key for TENANT and print it once (only its hash is stored)."""
    from service.config import hash_api_key
    from service.store.jobs import ApiKeyRecord

    if not TENANT_RE.fullmatch(tenant):
        _fail(
            f"tenant {tenant!r} is not 1 to 128 letters, digits, '.', '_', '@' or '-' "
            "starting with a letter or digit"
        )
    store = _open_store()
    try:
        key = secrets.token_urlsafe(32)  # 256 bits: SHA-256 without salt is enough (config.py)
        digest = hash_api_key(key)
        store.add_api_key(tenant=tenant, key_sha256=digest)
    finally:
        store.dispose()
    typer.echo(key)
    typer.echo(
        f"created key {digest[: ApiKeyRecord.ID_LENGTH]} for tenant {tenant!r}; send it in the "
        "X-API-Key header. Save it now: it cannot be shown again.",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    active_only: Annotated[bool, typer.Option("--active", help="Leave out revoked keys.")] = False,
) -> None:
    """List stored keys: id, tenant, creation and revocation time (never the key)."""
    store = _open_store()
    try:
        records = store.list_api_keys(include_revoked=not active_only)
    finally:
        store.dispose()
    if not records:
        kind = "active API keys" if active_only else "API keys"
        typer.echo(f"no {kind} stored (plcert keys create TENANT adds one)", err=True)
        return
    rows = [("KEY ID", "TENANT", "CREATED", "REVOKED")] + [
        (r.key_id, r.tenant, _when(r.created_at), _when(r.revoked_at)) for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[
        str,
        typer.Argument(
            help=f"Key id from `plcert keys list`, or a hash prefix of {MIN_PREFIX}+ digits."
        ),
    ],
) -> None:
    """Revoke a stored key: requests with it are answered 401 from now on."""
    prefix = key_id.strip().lower()
    if len(prefix) < MIN_PREFIX or len(prefix) > 64 or not re.fullmatch(r"[0-9a-f]+", prefix):
        _fail(
            f"{key_id!r} is not a key id: give {MIN_PREFIX} to 64 hex digits from "
            "`plcert keys list`"
        )
    store = _open_store()
    try:
        matches = store.find_api_keys(prefix)
        if not matches:
            _fail(f"no stored API key has id {prefix!r} (see `plcert keys list`)")
        if len(matches) > 1:
            ids = ", ".join(f"{m.key_id} ({m.tenant})" for m in matches)
            _fail(f"key id {prefix!r} is ambiguous: it matches {ids}; give more digits")
        (found,) = matches
        if found.revoked_at is not None:
            _fail(f"key {found.key_id} of tenant {found.tenant!r} is already revoked")
        if not store.revoke_api_key(found.key_sha256):
            _fail(f"key {found.key_id} was revoked meanwhile")
    finally:
        store.dispose()
    typer.echo(f"revoked key {found.key_id} of tenant {found.tenant!r}")


@keys_app.command("webhook-secret")
def webhook_secret(
    tenant: Annotated[str, typer.Argument(help="Tenant whose secret to show.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace the secret with a new one first.")
    ] = False,
) -> None:
    """Print TENANT's webhook signing secret (whsec_...), made on first use; the tenant can
    also read it from GET /v1/webhooks/secret."""
    if not TENANT_RE.fullmatch(tenant):
        _fail(f"tenant {tenant!r} is not a valid tenant name")
    store = _open_store()
    try:
        found = store.rotate_webhook_secret(tenant) if rotate else store.webhook_secret(tenant)
    finally:
        store.dispose()
    typer.echo(found.secret)
    typer.echo(
        f"webhook secret of tenant {tenant!r} ({'rotated' if rotate else 'created'} "
        f"{_when(found.created_at)}): verify the webhook-signature header of events with it",
        err=True,
    )
