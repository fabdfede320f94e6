"""Webhooks: signed events to a job's ``callback_url`` when it reaches a terminal state.

A submission may carry ``callback_url``. When the job succeeds, fails or is canceled, a Celery
task (:mod:`worker.webhooks`) POSTs one event to it, signed per the Standard Webhooks spec
(:mod:`service.webhooks.signing`) with the tenant's secret, and retries with exponential backoff
up to ``PLCERT_WEBHOOK_MAX_ATTEMPTS`` deliveries. Every attempt is logged with the job
(``GET /v1/certifications/{id}/deliveries``).

- :mod:`service.webhooks.urls`: which URLs are accepted (at submit and again before every
  delivery, against DNS rebinding).
- :mod:`service.webhooks.signing`: secrets and signatures.
- :mod:`service.webhooks.delivery`: one HTTP delivery (pinned address, no redirects, short
  response prefix, timeouts), the event body and the retry schedule.
- :mod:`service.webhooks.events`: starting the delivery of a finished job.
"""
