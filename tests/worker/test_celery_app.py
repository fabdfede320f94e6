"""The Celery app carries the reliability settings of PITFALLS.md."""

from __future__ import annotations

from pathlib import Path

from service.config import load_settings
from worker.app import TASK_NAME, WEBHOOK_TASK_NAME, make_celery


def test_long_job_settings_ack_late_and_prefetch_one(tmp_path: Path) -> None:
    conf = make_celery(load_settings(data_dir=tmp_path)).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    # A broker restart must not kill running jobs (the job store's CAS makes redelivery safe).
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert conf.task_ignore_result and conf.result_backend is None
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_default_queue == "cpu"
    assert {q.name for q in conf.task_queues} == {"cpu", "gpu", "webhooks"}
    # deliveries have their own queue: they never wait behind queued certifications
    assert conf.task_routes[WEBHOOK_TASK_NAME]["queue"] == "webhooks"


def test_time_limits_come_from_settings(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, job_time_limit_s=100, job_hard_time_limit_s=130)
    conf = make_celery(s).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 130)


def test_redis_visibility_timeout_exceeds_the_hard_time_limit(tmp_path: Path) -> None:
    s = load_settings(
        data_dir=tmp_path,
        broker_url="redis://127.0.0.1:6379/0",
        job_time_limit_s=3600,
        job_hard_time_limit_s=4000,
    )
    vt = make_celery(s).conf.broker_transport_options["visibility_timeout"]
    assert vt > s.job_hard_time_limit_s + 300


def test_filesystem_broker_keeps_its_folders_in_the_data_dir(tmp_path: Path) -> None:
    opts = make_celery(load_settings(data_dir=tmp_path)).conf.broker_transport_options
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        assert Path(opts[key]).is_dir() and Path(opts[key]).is_relative_to(tmp_path / "broker")


def test_the_tasks_are_registered_under_their_public_names() -> None:
    from worker.celery_app import app
    from worker.tasks import run_certification
    from worker.webhooks import deliver_webhook

    assert run_certification.name == TASK_NAME
    assert deliver_webhook.name == WEBHOOK_TASK_NAME
    assert {TASK_NAME, WEBHOOK_TASK_NAME} <= set(app.tasks)


def _modules_after_import(module: str) -> set[str]:
    """The plcert modules (service.*, worker.*) loaded by importing ``module`` in a fresh
    interpreter (sys.modules of this one already holds both sides)."""
    import subprocess
    import sys

    code = (
        f"import sys, {module}\n"
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('service', 'worker')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_the_api_and_the_worker_share_one_app_module_and_do_not_import_each_other() -> None:
    api_side = _modules_after_import("service.jobs_dispatch")
    assert "worker.app" in api_side
    assert "worker.celery_app" not in api_side and "worker.tasks" not in api_side
    home = _modules_after_import("worker.app")
    assert home <= {"service", "service.config", "worker", "worker.app"}, home
    worker_side = _modules_after_import("worker.tasks")
    assert "service.jobs_dispatch" not in worker_side
