"""docker-compose.yml is valid for docker-compose v1 (and the `docker compose` plugin).

No Docker engine runs here; `docker-compose config` validates the file (unknown keys, bad types)
without one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, require_system_tool

COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str]:
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    if shutil.which("docker") is not None:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    require_system_tool("docker-compose", "validates docker-compose.yml")
    raise AssertionError("unreachable")  # require_system_tool skipped or failed


def _config(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), *extra, "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def test_compose_file_is_accepted_by_docker_compose_config() -> None:
    result = _config()
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"api", "worker", "redis", "postgres"} <= set(services)


def test_gpu_worker_is_behind_the_gpu_profile_and_uses_the_solo_pool() -> None:
    with_gpu = _config("--profile", "gpu")
    assert with_gpu.returncode == 0, with_gpu.stderr
    gpu = yaml.safe_load(with_gpu.stdout)["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert "--queues gpu" in " ".join(_as_list(gpu["command"]))
    assert "solo" in _as_list(gpu["command"])
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def _as_list(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


def test_worker_service_can_be_scaled() -> None:
    # `--scale worker=N` fails with a fixed container name or a fixed host port.
    raw = yaml.safe_load(COMPOSE.read_text())
    worker = raw["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_services_share_one_data_volume_and_wait_for_healthy_dependencies() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    services = raw["services"]
    for name in ("api", "worker", "worker-gpu"):
        assert "plcert-data:/var/lib/plcert" in services[name]["volumes"], name
        for dep in ("redis", "postgres"):
            assert services[name]["depends_on"][dep]["condition"] == "service_healthy"
        env = services[name]["environment"]
        for key in ("PLCERT_DATABASE_URL", "PLCERT_BROKER_URL", "PLCERT_DATA_DIR"):
            assert key in env, (name, key)
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "--appendonly" in services["redis"]["command"]
    assert "noeviction" in services["redis"]["command"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_install_a_pinned_torch_before_the_package(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert text.index("torch==") < text.index("pip install ."), dockerfile
    assert "download.pytorch.org/whl/" in text


def test_compose_file_names_only_existing_dockerfiles() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        build = service.get("build")
        if build:
            assert Path(ROOT / build["dockerfile"]).is_file(), name


def _concurrency(command: str | list[str]) -> int:
    args = _as_list(command)
    return int(args[args.index("--concurrency") + 1])


def _bytes(text: str) -> int:
    from service.config import parse_bytes

    return parse_bytes(text, "size")


def test_cpu_worker_threads_match_its_cpu_limit_and_concurrency() -> None:
    # cpus = concurrency x torch threads: no oversubscription, no idle core (issue 8).
    raw = yaml.safe_load(COMPOSE.read_text())
    worker = raw["services"]["worker"]
    threads = int(worker["environment"]["PLCERT_TORCH_THREADS"])
    assert float(worker["cpus"]) == _concurrency(worker["command"]) * threads


def test_api_memory_limit_of_a_job_fits_in_the_worker_memory_limit() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    worker = raw["services"]["worker"]
    per_job = _bytes(str(raw["x-plcert-env"]["PLCERT_WORKER_MEMORY_LIMIT"]))
    assert per_job * _concurrency(worker["command"]) <= _bytes(str(worker["mem_limit"]) + "iB")
