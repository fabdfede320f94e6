"""The job store's part for webhooks: event state on the job, the delivery log, tenant secrets.

State of a job's terminal event (columns of ``jobs``)::

    webhook_status  None --mark_webhook_pending--> pending --record_delivery--> delivered | failed
                                                      ^  \\--(failed attempt, next_at)--/
    webhook_attempts   deliveries started so far (a claim increments it: one attempt per claim)
    webhook_next_at    when the next attempt is due; while an attempt runs, when its hold ends

Each step is a compare-and-set, so duplicate delivery messages (a retry and a janitor re-send)
never run one attempt twice. :class:`JobStore` includes these methods (:class:`WebhookRecords`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.store.models import TERMINAL_STATUSES, jobs, webhook_deliveries, webhook_secrets
from service.store.records import JobRecord, record_from_row, utcnow

WEBHOOK_STATUSES = ("pending", "delivered", "failed")
EARLY_TOLERANCE_S = 2.0
"""A delivery message may arrive this much before its attempt is due (timer resolution)."""


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery attempt of a job's event, as logged."""

    job_id: str
    attempt: int
    event_id: str
    event_type: str
    url: str
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    response_prefix: str | None
    succeeded: bool


@dataclass(frozen=True)
class WebhookSecret:
    """A tenant's signing secret (``whsec_...``) and when it was made."""

    tenant: str
    secret: str
    created_at: datetime


class WebhookRecords:
    """Webhook methods of :class:`service.store.jobs.JobStore` (see the module docstring)."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    # ----- event state ---------------------------------------------------------------------

    def mark_webhook_pending(self, job_id: str, now: datetime | None = None) -> bool:
        """None -> pending (due now) for a finished, undeleted job with a callback URL; True if
        this call made the change (the caller then sends the delivery task)."""
        now = now or utcnow()
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.callback_url.is_not(None),
                    jobs.c.webhook_status.is_(None),
                    jobs.c.status.in_(TERMINAL_STATUSES),
                    jobs.c.deleted_at.is_(None),
                )
                .values(webhook_status="pending", webhook_next_at=now)
            )
        return res.rowcount == 1

    def claim_webhook_attempt(
        self, job_id: str, *, hold_s: float, max_attempts: int, now: datetime | None = None
    ) -> JobRecord | None:
        """Start the next delivery attempt of a pending, due event: ``webhook_attempts`` + 1
        (the attempt's number) and ``webhook_next_at`` = now + ``hold_s`` (no other message
        starts an attempt before then). None when nothing is due; a pending event that already
        had ``max_attempts`` attempts becomes failed instead."""
        now = now or utcnow()
        due = and_(
            jobs.c.id == job_id,
            jobs.c.webhook_status == "pending",
            jobs.c.deleted_at.is_(None),
            jobs.c.webhook_next_at <= now + timedelta(seconds=EARLY_TOLERANCE_S),
        )
        with self._write() as conn:
            conn.execute(
                update(jobs)
                .where(due, jobs.c.webhook_attempts >= max_attempts)
                .values(webhook_status="failed", webhook_next_at=None)
            )
            res = conn.execute(
                update(jobs)
                .where(due, jobs.c.webhook_attempts < max_attempts)
                .values(
                    webhook_attempts=jobs.c.webhook_attempts + 1,
                    webhook_next_at=now + timedelta(seconds=hold_s),
                )
            )
            if res.rowcount != 1:
                return None
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
        return record_from_row(row)

    def record_delivery(
        self,
        record: DeliveryRecord,
        *,
        webhook_status: str,
        next_at: datetime | None = None,
    ) -> bool:
        """Log one attempt and move the event to ``webhook_status`` (``pending`` with the next
        attempt's ``next_at``, or ``delivered`` / ``failed``). False (nothing written) when the
        attempt is stale: another one started since, or the job is gone."""
        if webhook_status not in WEBHOOK_STATUSES:
            raise ValueError(f"webhook_status must be one of {WEBHOOK_STATUSES}")
        try:
            with self._write() as conn:
                res = conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == record.job_id,
                        jobs.c.webhook_status == "pending",
                        jobs.c.webhook_attempts == record.attempt,
                    )
                    .values(webhook_status=webhook_status, webhook_next_at=next_at)
                )
                if res.rowcount != 1:
                    return False
                # (job_id, attempt) is the key: an attempt already logged rolls this back
                conn.execute(insert(webhook_deliveries).values(**record.__dict__))
        except IntegrityError:
            return False
        return True

    def list_deliveries(self, job_id: str) -> list[DeliveryRecord]:
        """The delivery log of a job, first attempt first."""
        q = (
            select(webhook_deliveries)
            .where(webhook_deliveries.c.job_id == job_id)
            .order_by(webhook_deliveries.c.attempt)
        )
        with self._read() as conn:
            return [DeliveryRecord(**r) for r in conn.execute(q).mappings()]

    def due_webhooks(self, now: datetime | None = None, *, grace_s: float = 60.0) -> list[str]:
        """Ids of jobs whose event nobody is delivering: finished over ``grace_s`` ago with no
        event started, or pending with an attempt due (or an attempt's hold ended) over
        ``grace_s`` ago. The janitor starts or re-sends them."""
        now = now or utcnow()
        late = now - timedelta(seconds=grace_s)
        q = select(jobs.c.id).where(
            jobs.c.callback_url.is_not(None),
            jobs.c.deleted_at.is_(None),
            jobs.c.status.in_(TERMINAL_STATUSES),
            or_(
                and_(jobs.c.webhook_status.is_(None), jobs.c.finished_at < late),
                and_(jobs.c.webhook_status == "pending", jobs.c.webhook_next_at < late),
            ),
        )
        with self._read() as conn:
            return [str(r) for r in conn.execute(q.order_by(jobs.c.finished_at)).scalars()]

    # ----- tenant secrets ------------------------------------------------------------------

    def webhook_secret(self, tenant: str) -> WebhookSecret:
        """The tenant's signing secret, made on first use."""
        from service.webhooks.signing import new_secret

        for _ in range(3):
            found = self._find_secret(tenant)
            if found is not None:
                return found
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(webhook_secrets).values(
                            tenant=tenant, secret=new_secret(), created_at=utcnow()
                        )
                    )
            except IntegrityError:
                continue  # made concurrently: read it
        found = self._find_secret(tenant)
        if found is None:  # pragma: no cover - a row that vanished between two reads
            raise RuntimeError(f"no webhook secret for tenant {tenant!r}")
        return found

    def rotate_webhook_secret(self, tenant: str) -> WebhookSecret:
        """Replace the tenant's secret with a new one (events are signed with it from now)."""
        from service.webhooks.signing import new_secret

        self.webhook_secret(tenant)
        with self._write() as conn:
            conn.execute(
                update(webhook_secrets)
                .where(webhook_secrets.c.tenant == tenant)
                .values(secret=new_secret(), created_at=utcnow())
            )
        return self.webhook_secret(tenant)

    def _find_secret(self, tenant: str) -> WebhookSecret | None:
        with self._read() as conn:
            row = (
                conn.execute(select(webhook_secrets).where(webhook_secrets.c.tenant == tenant))
                .mappings()
                .first()
            )
        return WebhookSecret(**row) if row is not None else None
