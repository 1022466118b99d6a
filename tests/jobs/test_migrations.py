"""The move of BatchJob to the jobs app (and Generation to core) keeps existing databases' tables and rows.

A database created before the move has ``gateway.BatchJob`` and
``gateway.Generation`` in the table names ``gateway_batchjob`` and
``gateway_generation``.  Migrating it forward must keep every row: the moves
are state-only (``SeparateDatabaseAndState``).
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.models import Generation
from jobs.models import BatchJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# The schema of the gateway app before core/ and jobs/ existed (today's main before the restructure).
BEFORE_THE_MOVE = [("gateway", "0002_batchjob"), ("jobs", None), ("core", None)]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection)


def _latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_a_database_created_before_the_move_keeps_its_jobs_and_generations():
    latest = _latest()
    try:
        executor = _migrate(BEFORE_THE_MOVE)
        old_apps = executor.loader.project_state([BEFORE_THE_MOVE[0]]).apps
        applied = executor.loader.applied_migrations
        assert ("jobs", "0001_initial") not in applied  # really the old layout: no jobs app yet
        assert ("core", "0001_initial") not in applied
        OldBatchJob = old_apps.get_model("gateway", "BatchJob")
        OldGeneration = old_apps.get_model("gateway", "Generation")
        job_id = uuid.uuid4()
        OldBatchJob.objects.create(
            id=job_id,
            tenant_id=7,
            tenant_slug="acme",
            key_id=3,
            key_prefix="mk_test",
            idempotency_key="k-1",
            request_digest="d" * 64,
            model_name="digits",
            model_version=2,
            model_sha256="a" * 64,
            status="running",
            total=10,
            done=4,
        )
        OldGeneration.objects.update_or_create(kind="models", defaults={"value": 41})

        _migrate(latest)

        job = BatchJob.objects.get(id=job_id)
        assert (job.tenant_slug, job.status, job.done, job.total, job.idempotency_key) == (
            "acme",
            "running",
            4,
            10,
            "k-1",
        )
        assert Generation.objects.get(kind="models").value == 41
        assert BatchJob._meta.db_table == "gateway_batchjob"
        assert Generation._meta.db_table == "gateway_generation"
    finally:
        _migrate(latest)


def test_the_idempotency_constraint_survives_the_move():
    """The per-tenant idempotency key is still unique in the moved table (the constraint was not dropped)."""
    from django.db import IntegrityError, transaction

    fields = {
        "tenant_id": 7,
        "tenant_slug": "acme",
        "key_id": 3,
        "key_prefix": "mk_test",
        "idempotency_key": "same",
        "request_digest": "d" * 64,
        "model_name": "digits",
        "model_version": 1,
        "model_sha256": "a" * 64,
        "total": 1,
    }
    BatchJob.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchJob.objects.create(**fields)
