"""Local services for cluster mode: PostgreSQL, Redis and Dagster Celery workers."""
