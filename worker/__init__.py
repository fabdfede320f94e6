"""Celery workers that run certification jobs."""
