"""``python -m worker worker --queues cpu ...``: the Celery worker (what ``plcert serve`` spawns).

The arguments are those of ``celery worker``; see :func:`worker.embedded.worker_argv`.
"""

from __future__ import annotations

import sys

from service.config import get_settings
from service.logging import configure_logging
from worker.celery_app import app

if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    app.worker_main(argv=sys.argv[1:])
