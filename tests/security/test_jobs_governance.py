"""Issue #13, items 2 and 3: blocks reach accepted jobs, and a retried chunk is audited once.

A job is admitted when it is submitted, but it runs later, in chunks.  Each
chunk is run only if a request with the job's key could run now: suspending
the tenant, revoking the key, engaging a kill switch or a denying policy stop
the job (``cancelled`` with the refusal's code) and refund what never ran.
A worker killed between a chunk's audit record and its progress update must
not leave a second record when the chunk runs again.
"""

from __future__ import annotations

import json

import pytest
from django.db.models import Sum

from audit.models import AuditEvent
from jobs import services
from jobs.models import BatchJob
from jobs.services import ExecutionOutcome, batch_job_execute
from tenants.models import ApiKey

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ROWS, CHUNK = 900, 300


@pytest.fixture(autouse=True)
def _jobs_dir(settings, tmp_path):
    settings.JOBS_DIR = str(tmp_path / "jobs")
    settings.JOB_CHUNK_SIZE = CHUNK


def submit(client, caller, rows):
    body = {"model": "digits", "instances": rows, "purpose": "research"}
    response = client.post("/v1/jobs", data=json.dumps(body), content_type="application/json", **caller.headers)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _suspend(caller):
    from tenants.services import tenant_suspend

    tenant_suspend(tenant=caller.tenant, reason="unpaid invoices", actor="staff:test")


def _revoke(caller):
    from tenants.services import api_key_revoke

    api_key_revoke(key=ApiKey.objects.get(prefix=caller.prefix), reason="leaked", actor="staff:test")


def _kill_model(caller):
    from policy.services import kill_switch_engage

    kill_switch_engage(target_type="model", target="digits", reason="incident 42", actor="staff:test")


def _deny_by_policy(caller):
    from policy.services import policy_create

    policy_create(
        name="no-digits",
        actor="staff:test",
        reason="withdrawn",
        document=[
            {"id": "no-digits", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}
        ],
    )


BLOCKS = {
    "tenant suspended": (_suspend, "tenant_suspended"),
    "key revoked": (_revoke, "api_key_revoked"),
    "model kill switch": (_kill_model, "policy_denied"),
}


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_a_block_engaged_while_a_job_runs_stops_it_before_the_next_chunk(
    block, client, digits, make_caller, digit_rows, monkeypatch
):
    engage, code = BLOCKS[block]
    caller = make_caller(daily_instances=ROWS)
    job_id = submit(client, caller, digit_rows[:ROWS].tolist())
    real_audit_chunk = services._audit_chunk

    def audit_then_block(job, *args, **kwargs):
        real_audit_chunk(job, *args, **kwargs)
        if kwargs["start"] == 0:  # engaged while the first chunk runs
            engage(caller)

    monkeypatch.setattr(services, "_audit_chunk", audit_then_block)
    assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.status == "cancelled" and job.error_code == code
    assert job.done == CHUNK and job.units_refunded == ROWS - CHUNK and job.completions == 1
    assert AuditEvent.objects.filter(action="job.chunk", detail__job_id=job_id).count() == 1
    final = AuditEvent.objects.get(action="job.cancelled", detail__job_id=job_id)
    assert final.units == -(ROWS - CHUNK) and final.error_code == code
    # What the job never ran is charged to nobody: usage is what was served.
    charged = AuditEvent.objects.filter(tenant_id=caller.tenant.pk).aggregate(total=Sum("units"))["total"]
    assert charged == CHUNK


def test_a_queued_job_of_a_suspended_tenant_never_runs_and_is_refunded(client, digits, make_caller, digit_rows):
    from tenants.services import tenant_unsuspend

    caller = make_caller(daily_instances=ROWS)
    job_id = submit(client, caller, digit_rows[:ROWS].tolist())
    _suspend(caller)
    assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.status == "cancelled" and job.error_code == "tenant_suspended"
    assert job.done == 0 and job.units_refunded == ROWS
    assert not AuditEvent.objects.filter(action="job.chunk", detail__job_id=job_id).exists()
    # The live quota was given back too: once reinstated, the whole daily allowance fits again.
    caller.tenant.refresh_from_db()
    tenant_unsuspend(tenant=caller.tenant, reason="paid", actor="staff:test")
    submit(client, caller, digit_rows[:ROWS].tolist())


def test_a_policy_that_now_denies_the_job_stops_it_with_the_rule(client, digits, make_caller, digit_rows):
    caller = make_caller()
    job_id = submit(client, caller, digit_rows[:ROWS].tolist())
    _deny_by_policy(caller)
    assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.status == "cancelled" and job.error_code == "policy_denied" and job.units_refunded == ROWS
    final = AuditEvent.objects.get(action="job.cancelled", detail__job_id=job_id)
    assert final.rule_id and final.detail["refusal"] == "policy_denied"
    body = client.get(f"/v1/jobs/{job_id}", **caller.headers)
    # The tenant may still read its job (the policy refuses predictions, not reads).
    assert body.status_code == 200 and body.json()["error_code"] == "policy_denied"


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it in the worker runs, nothing catches it."""


def test_a_chunk_run_again_after_a_worker_loss_is_audited_once(client, digits, make_caller, digit_rows, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    caller = make_caller()
    job_id = submit(client, caller, digit_rows[:ROWS].tolist())
    real_audit_chunk = services._audit_chunk

    def audit_then_die(job, *args, **kwargs):
        real_audit_chunk(job, *args, **kwargs)
        if kwargs["start"] == CHUNK:  # killed after the second chunk's record, before its progress
            raise WorkerKilled

    monkeypatch.setattr(services, "_audit_chunk", audit_then_die)
    with pytest.raises(WorkerKilled):
        batch_job_execute(job_id=job_id, worker="w1")
    monkeypatch.undo()
    assert BatchJob.objects.get(id=job_id).done == CHUNK
    BatchJob.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert batch_job_execute(job_id=job_id, worker="w2") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.status == "succeeded" and job.done == ROWS and job.completions == 1
    chunks = AuditEvent.objects.filter(action="job.chunk", detail__job_id=job_id)
    assert sorted(e.detail["start"] for e in chunks) == [0, CHUNK, 2 * CHUNK]
    assert sum(e.prediction["count"] for e in chunks) == ROWS
    usage = AuditEvent.objects.filter(tenant_id=caller.tenant.pk).aggregate(total=Sum("units"))["total"]
    assert usage == ROWS
