"""Persistence: the job store (SQLAlchemy; SQLite or PostgreSQL) and the artifact store (files)."""

from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore

__all__ = ["ArtifactStore", "JobRecord", "JobStore"]
