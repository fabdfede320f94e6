"""Settings of the service and the worker, read from ``PLCERT_*`` environment variables.

One validated :class:`Settings` object; a bad value refuses to start with a message that names
the variable and the value. :func:`get_settings` caches the object for the process.

API keys (``PLCERT_API_KEYS="tenant:key,tenant2:key2"``) are hashed with SHA-256 as soon as
they are read; only the hashes are kept. SHA-256 (no salt, no stretching) is adequate for keys
that are long random strings (>= 128 bits of entropy): a password hash is only needed for
guessable secrets. With no key configured, authentication is off (every request belongs to the
tenant ``"default"``) and the service refuses to bind anything but a loopback address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from plcore.estimate.limits import SizeLimits

DEFAULT_TENANT = "default"
"""The tenant of every request when authentication is off (embedded mode)."""

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_BROKER_SCHEMES = ("filesystem", "redis", "rediss", "memory", "amqp", "pyamqp")


def default_data_dir() -> Path:
    """The user's data folder: ``$XDG_DATA_HOME/plcert`` or ``~/.local/share/plcert``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "plcert"


def hash_api_key(key: str) -> str:
    """SHA-256 hex digest of an API key (what the database and memory keep)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 2**10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 2**20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 2**30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 2**40,
}


def parse_bytes(text: str, name: str) -> int:
    """``"8GiB"`` -> 8589934592; plain digits are bytes; units k/M/G/T (decimal) and
    KiB/MiB/GiB/TiB (binary), case-insensitive."""
    raw = text.strip().replace(" ", "").replace("_", "")
    i = len(raw)
    while i > 0 and not (raw[i - 1].isdigit() or raw[i - 1] == "."):
        i -= 1
    number, unit = raw[:i], raw[i:].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={text!r} is not a size like 8589934592, '8GiB' or '512MB'")
    return int(value * _UNITS[unit])


def machine_memory_bytes(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """This machine's physical memory, lowered by a cgroup memory limit when one is set."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in (
        cgroup_root / "memory.max",
        cgroup_root / "memory" / "memory.limit_in_bytes",
    ):
        try:
            raw = limit_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
        break
    return int(total)


class ConfigError(ValueError):
    """A configuration that the service refuses to start with."""


class Settings(BaseSettings):
    """Configuration of the API, the worker and the stores (environment prefix ``PLCERT_``)."""

    model_config = SettingsConfigDict(env_prefix="PLCERT_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the SQLite database, the artifacts and the filesystem broker.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the job store; default sqlite:///{data_dir}/plcert.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    broker_url: str = Field(
        "filesystem://", description="Celery broker; filesystem:// keeps folders in data_dir."
    )
    result_backend: str | None = Field(None, description="Unused: results live in the job store.")
    api_keys: SecretStr = Field(
        SecretStr(""), description="'tenant:key,tenant2:key2'; empty = no auth (localhost only)."
    )
    max_upload_bytes: int = Field(64 * 2**20, gt=0, description="Cap of one request body.")
    job_time_limit_s: float = Field(3600.0, gt=0, description="Soft time limit of one job.")
    job_hard_time_limit_s: float = Field(3900.0, gt=0, description="Hard time limit of one job.")
    lease_s: float = Field(30.0, gt=0, description="Heartbeat lease of a running job.")
    queued_orphan_after_s: float = Field(
        600.0, gt=0, description="A queued job older than this with no claim is re-sent."
    )
    max_attempts: int = Field(3, ge=1, description="Claims of one job before it is failed.")
    idempotency_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="How long an Idempotency-Key holds; a replay after it creates a new job.",
    )
    queue_cpu: str = Field("cpu", min_length=1)
    queue_gpu: str = Field("gpu", min_length=1)
    queue_webhooks: str = Field(
        "webhooks", min_length=1, description="Queue of the webhook deliveries (light tasks)."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Accept callback URLs whose address is private, loopback, link-local or "
        "otherwise not global (tests, a receiver inside your own network).",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Connect and read timeout of one webhook delivery."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=20, description="Deliveries of one event before it is given up."
    )
    webhook_retry_base_s: float = Field(
        10.0,
        gt=0,
        description="Wait after the first failed delivery; it doubles after each one, up to "
        "PLCERT_WEBHOOK_RETRY_MAX_S.",
    )
    webhook_retry_max_s: float = Field(
        3600.0, gt=0, description="Longest wait between two deliveries of one event."
    )
    host: str = Field("127.0.0.1", description="Address the API binds to.")
    port: int = Field(8000, ge=0, le=65535)
    dispatch: Literal["celery", "none"] = Field(
        "celery", description="'none' stores jobs without sending them (tests, API-only runs)."
    )
    validation_timeout_s: float = Field(
        120.0, gt=0, description="Time allowed for loading model and data at submit."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="torch threads of each worker pool process; default: usable cores / "
        "concurrency (CPU affinity and cgroup quota), at least 1.",
    )
    worker_memory_limit: int = Field(
        default_factory=lambda: machine_memory_bytes(),
        gt=0,
        description="Memory one job may use on a worker, in bytes or with a unit (e.g. '8GiB'): "
        "the API refuses a job whose estimated peak memory exceeds it. Default: this machine's "
        "memory (or its cgroup limit).",
    )
    max_params: int = Field(
        50_000_000,
        gt=0,
        description="Most parameters m of a job's model (counted from the spec or the ONNX "
        "graph before it is built); more is a 422 'too-many-parameters' at submit.",
    )
    max_outputs: int = Field(
        50_000,
        gt=0,
        description="Most outputs N = n k of a job (the tangent kernel is N x N); more is a "
        "422 'too-many-outputs'.",
    )
    max_kernel_bytes: int = Field(
        16 * 2**30,
        gt=0,
        description="Most bytes of one float64 tangent kernel, 8 N^2 (e.g. '16GiB'); more is a "
        "422 'kernel-too-large'.",
    )
    max_hessian_work: int = Field(
        10**12,
        gt=0,
        description="Most parameter-sample products m n of one Hessian-vector product on all "
        "samples; more is a 422 'hessian-work-too-large'.",
    )
    max_queued_per_tenant: int = Field(
        0,
        ge=0,
        description="Most queued jobs of one tenant; a submission beyond it is a 429 "
        "'tenant-quota'. 0 = no limit.",
    )
    max_running_per_tenant: int = Field(
        0,
        ge=0,
        description="Running-job allowance of one tenant, enforced at submit only: a tenant may "
        "hold at most max_queued + max_running unfinished (queued + running) jobs, or "
        "max_running when the queued cap is 0; beyond it a submission is a 429 "
        "'tenant-quota'. 0 = no limit.",
    )
    rate_limit: int = Field(
        6000,
        ge=0,
        description="Requests per minute of one tenant to the /v1 routes (token bucket in each "
        "API process, bursts of up to one minute's worth); beyond it a 429 'rate-limited' "
        "with Retry-After. 0 = no limit. The default (100/s) admits the OpenAPI fuzz run of the "
        "tests, about 3,200 requests in under a minute.",
    )
    retention_days: float = Field(
        30.0,
        ge=0,
        le=36500,
        allow_inf_nan=False,
        description="Finished jobs (and their files) are deleted this many days after they "
        "finished, by the janitor and by `plcert gc`. 0 = keep forever.",
    )
    body_read_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the next chunk of a request body (408 after)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(True, description="One JSON object per log line.")

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if v and v.split("://", 1)[0] not in _DB_SCHEMES:
            raise ValueError(
                f"PLCERT_DATABASE_URL={v.split('@')[-1]!r}: scheme must be one of {_DB_SCHEMES}"
            )
        if v.startswith("postgresql://"):
            # psycopg 3 is the installed driver; plain postgresql:// would ask for psycopg2.
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        return v

    @field_validator("worker_memory_limit", "max_kernel_bytes", mode="before")
    @classmethod
    def _memory_size(cls, v: Any, info: ValidationInfo) -> Any:
        name = f"PLCERT_{(info.field_name or '').upper()}"
        return parse_bytes(v, name) if isinstance(v, str) else v

    @field_validator("max_params", "max_outputs", "max_hessian_work", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        # '50e6' and '1e12' read as the integers they name (pydantic refuses them as int).
        if isinstance(v, str | float) and not isinstance(v, bool):
            try:
                f = float(v)
            except ValueError:
                return v
            if f.is_integer():
                return int(f)
        return v

    @property
    def size_limits(self) -> SizeLimits:
        """The ``PLCERT_MAX_*`` caps checked at submit (:mod:`service.guards`)."""
        from plcore.estimate.limits import SizeLimits

        return SizeLimits(
            max_params=self.max_params,
            max_outputs=self.max_outputs,
            max_kernel_bytes=self.max_kernel_bytes,
            max_hessian_work=self.max_hessian_work,
        )

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, v: str) -> str:
        scheme = v.split("://", 1)[0]
        if "://" not in v or scheme not in _BROKER_SCHEMES:
            raise ValueError(f"PLCERT_BROKER_URL={v!r}: scheme must be one of {_BROKER_SCHEMES}")
        return v

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, v: SecretStr) -> SecretStr:
        _parse_api_keys(v.get_secret_value())  # raises with a clear message
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.job_hard_time_limit_s < self.job_time_limit_s:
            raise ValueError(
                f"PLCERT_JOB_HARD_TIME_LIMIT_S={self.job_hard_time_limit_s} is below "
                f"PLCERT_JOB_TIME_LIMIT_S={self.job_time_limit_s}"
            )
        if not self.auth_enabled and not is_loopback(self.host):
            raise ValueError(
                f"PLCERT_HOST={self.host!r} is not a loopback address and no API keys are "
                "configured: set PLCERT_API_KEYS='tenant:key' or bind 127.0.0.1"
            )
        return self

    # ----- derived values -------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        """The job-store URL (the SQLite file in data_dir unless configured)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'plcert.db'}"

    @property
    def artifacts_dir(self) -> Path:
        """Root of the content-addressed artifact store."""
        return self.data_dir / "artifacts"

    @property
    def broker_dir(self) -> Path:
        """Root of the filesystem broker's folders (in, processed, control)."""
        return self.data_dir / "broker"

    @property
    def api_key_hashes(self) -> dict[str, str]:
        """SHA-256 hex of each configured key -> its tenant."""
        return _parse_api_keys(self.api_keys.get_secret_value())

    @property
    def auth_enabled(self) -> bool:
        """True when at least one API key is configured in the environment."""
        return bool(self.api_key_hashes)

    def ensure_dirs(self) -> None:
        """Create data_dir and the folders below it."""
        for d in (self.data_dir, self.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)


def _parse_api_keys(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not tenant or not key:
            raise ValueError(
                f"PLCERT_API_KEYS entry {i + 1} is not 'tenant:key' (the key is not shown)"
            )
        if len(key) < 16:
            raise ValueError(
                f"PLCERT_API_KEYS entry {i + 1} (tenant {tenant!r}): key has {len(key)} "
                "characters; use at least 16 random characters"
            )
        out[hash_api_key(key)] = tenant
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus ``overrides``; raise :class:`ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; raises :class:`ConfigError` on bad config)."""
    return load_settings()


def auth_mode_message(settings: Settings) -> str:
    """One line for the start-up log that says whether and how requests are authenticated."""
    if settings.auth_enabled:
        return f"API key authentication on ({len(settings.api_key_hashes)} key(s) configured)"
    return "no API keys configured: binding to 127.0.0.1 only"


def check_bind_host(settings: Settings, host: str, *, stored_keys: bool = False) -> None:
    """Refuse to serve on ``host`` without authentication unless it is a loopback address.

    ``plcert serve --host`` calls this (the host flag may differ from ``PLCERT_HOST``) and logs
    :func:`auth_mode_message`. ``stored_keys``: the job store holds keys (``plcert keys``).
    """
    if stored_keys and not settings.auth_enabled:
        logging.getLogger("plcert.service").info("API key authentication on (keys in the store)")
        return
    if not settings.auth_enabled and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host!r} with no API keys configured: set "
            "PLCERT_API_KEYS='tenant:key' or bind 127.0.0.1"
        )
    logging.getLogger("plcert.service").info(auth_mode_message(settings))
