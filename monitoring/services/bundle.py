"""Regulator bundles: one archive per incident that an authority can check offline.

Layout of ``incident-<id>-bundle-<n>.zip`` (every member under ``incident-<id>/``)::

    manifest.json                  SHA-256 of every other member, signed with the audit key
    incident.json                  the record, its timeline and the signed snapshot taken at opening
    model-card.json, model-card.html
    policies.json                  the policy versions in force (documents), by name@number
    monitoring.json                the alert and the monitoring windows and results that triggered it
    audit/events.jsonl             the model version's audit events within the incident's window,
                                   each with its block and RFC 6962 inclusion proof
    audit/events.jsonl.manifest.json  the export's signed manifest (block headers and signatures)
    audit/checkpoint.json          the signed checkpoint of the newest block the export touches
    audit/public-key.pem           the audit signing key's public half
    VERIFY.txt                     how to verify (``python -m audit.verify_export``)

Built on a Celery worker (``monitoring.incident_bundle_build``, by bundle id,
idempotent: a finished bundle is left alone) or inline by the
``incident_bundle`` command.  The file is written under a temporary name and
renamed into place, readable by the service account only (it holds personal
data: the audit events of the affected requests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from audit.canonical import canonical_json, timestamp_text
from audit.models import AuditEvent
from audit.selectors import ExportFilters
from audit.services import audit_change_record
from audit.services.checkpoints import checkpoint_for_block
from audit.services.export import audit_export_write
from audit.signing import signing_identity
from core.queue import task_enqueue
from inference.model_card import card_html, card_json
from monitoring.errors import RegulatorBundleNotReady
from monitoring.models import Incident, MonitorResult, RegulatorBundle
from monitoring.selectors import regulator_bundle_get
from policy.selectors import policy_versions_by_labels, split_version_set

logger = logging.getLogger("monitoring.bundle")

BUNDLE_TASK = "monitoring.incident_bundle_build"
BUNDLE_KIND = "maas-incident-bundle"
EXPORT_MEMBER = "audit/events.jsonl"


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _incident_record(incident: Incident) -> dict[str, Any]:
    record = model_to_dict(incident)
    record.update(
        id=incident.pk,
        model=incident.model_version.ref,
        opened_at=timestamp_text(incident.opened_at),
        deadline=timestamp_text(incident.deadline),
        overdue=incident.is_overdue(),
        timeline=[
            {"at": timestamp_text(n.at), "actor": n.actor, "kind": n.kind, "action": n.action, "text": n.text}
            for n in incident.notes.order_by("at", "pk")
        ],
    )
    return record


def _results(incident: Incident, until: Any) -> list[MonitorResult]:
    rows = MonitorResult.objects.filter(model_version=incident.model_version).select_related("window")
    alert = incident.alert
    if alert is not None:
        rows = rows.filter(
            window_start__gte=alert.first_result.window_start, window_start__lte=alert.last_result.window_start
        )
    else:
        rows = rows.filter(window_start__gte=incident.window_start, window_start__lt=until)
    return list(rows.order_by("window_start"))


def _monitoring(incident: Incident, until: Any) -> dict[str, Any]:
    alert = incident.alert
    results = []
    for result in _results(incident, until):
        window = result.window
        results.append(
            {
                "window": {
                    "start": timestamp_text(window.window_start),
                    "seconds": window.window_seconds,
                    **{
                        k: getattr(window, k)
                        for k in (
                            "requests",
                            "instances",
                            "client_errors",
                            "denials",
                            "server_errors",
                            "review_flags",
                            "nonfinite",
                            "prediction_counts",
                            "confidence_counts",
                            "feature_counts",
                        )
                    },
                },
                "status": result.status,
                "has_reference": result.has_reference,
                "measures": result.measures,
                "breaches": result.breaches,
                "actions": result.actions,
                "policy_versions": result.policy_versions,
                "evaluated_at": timestamp_text(result.evaluated_at),
            }
        )
    return {
        "alert": None
        if alert is None
        else {
            "id": alert.pk,
            "rule_id": alert.rule_id,
            "policy_version": alert.policy_version,
            "measures": alert.measures,
            "windows": alert.windows,
            "opened_at": timestamp_text(alert.opened_at),
            "status": alert.status,
        },
        "results": results,
    }


def _policies(incident: Incident, monitoring: dict[str, Any]) -> dict[str, Any]:
    labels = set(incident.snapshot.get("policy_versions", []))
    for result in monitoring["results"]:
        labels.update(split_version_set(result["policy_versions"]))
    if monitoring["alert"]:
        labels.add(monitoring["alert"]["policy_version"])
    out: dict[str, Any] = {}
    for label, version in sorted(policy_versions_by_labels(labels=sorted(labels)).items()):
        out[label] = (
            None
            if version is None
            else {
                "policy": version.policy.name,
                "number": version.number,
                "document": version.document,
                "author": version.author,
                "created_at": timestamp_text(version.created_at),
                "reason": version.reason,
            }
        )
    return {"in_force_at_opening": incident.snapshot.get("policy_versions", []), "versions": out}


def _verify_text(incident: Incident, has_checkpoint: bool) -> str:
    pin = "--checkpoint audit/checkpoint.json" if has_checkpoint else "--public-key audit/public-key.pem"
    return (
        f"Regulator bundle of incident #{incident.pk} ({incident.model_version.ref}).\n\n"
        "1. manifest.json lists the SHA-256 of every member; check them (sha256sum).\n"
        "2. Verify the affected requests' audit events offline against their signed blocks:\n"
        f"   python -m audit.verify_export {EXPORT_MEMBER} {EXPORT_MEMBER}.manifest.json {pin}\n"
        "   (pin the key you obtained from the provider independently: --fingerprint KEY_ID).\n"
        "3. incident.json holds the snapshot signed when the incident opened (Ed25519 over its canonical JSON).\n"
    )


def _members(incident: Incident, workdir: Path, actor: str) -> list[tuple[str, Path | bytes]]:
    until = timezone.now()
    version = incident.model_version
    filters = ExportFilters(since=incident.window_start, until=until, model=version.name, model_version=version.version)
    export_path = workdir / "events.jsonl"
    with export_path.open("wb") as fh:
        manifest = audit_export_write(
            filters=filters,
            format="jsonl",
            stream=fh,
            actor=actor,
            source="incident_bundle",
            file_name="events.jsonl",
        )
    monitoring = _monitoring(incident, until)
    identity = signing_identity()
    members: list[tuple[str, Path | bytes]] = [
        ("incident.json", _json({**_incident_record(incident), "window_end": timestamp_text(until)})),
        ("model-card.json", card_json(version).encode("utf-8")),
        ("model-card.html", card_html(version).encode("utf-8")),
        ("policies.json", _json(_policies(incident, monitoring))),
        ("monitoring.json", _json(monitoring)),
        (EXPORT_MEMBER, export_path),
        (f"{EXPORT_MEMBER}.manifest.json", canonical_json(manifest).encode("ascii")),
        ("audit/public-key.pem", identity.public_key_pem.encode("ascii")),
    ]
    blocks = [entry["header"]["number"] for entry in manifest["blocks"]]
    checkpoint = checkpoint_for_block(number=max(blocks)) if blocks else None
    if checkpoint is not None:
        members.append(("audit/checkpoint.json", (canonical_json(checkpoint) + "\n").encode("ascii")))
    members.append(("VERIFY.txt", _verify_text(incident, checkpoint is not None).encode("utf-8")))
    return members


def _sha256_of(content: Path | bytes) -> str:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256()
    with content.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_file_path(bundle: RegulatorBundle) -> Path:
    """Where a bundle's archive lives."""
    return Path(settings.INCIDENT_BUNDLE_DIR) / f"incident-{bundle.incident_id}-bundle-{bundle.pk}.zip"


def _write_archive(incident: Incident, bundle: RegulatorBundle, actor: str) -> Path:
    target = bundle_file_path(bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    root = f"incident-{incident.pk}"
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=target.parent) as tmp:
        members = _members(incident, Path(tmp), actor)
        identity = signing_identity()
        manifest: dict[str, Any] = {
            "kind": BUNDLE_KIND,
            "incident_id": incident.pk,
            "bundle_id": bundle.pk,
            "model": incident.model_version.ref,
            "generated_at": timestamp_text(timezone.now()),
            "members": {name: _sha256_of(content) for name, content in members},
            "key_id": identity.key_id,
            "signature_algorithm": identity.algorithm,
        }
        manifest["signature"] = identity.sign(canonical_json(manifest).encode("ascii"))
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".bundle-", suffix=".zip")
        os.close(fd)
        os.chmod(partial, 0o600)
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(f"{root}/manifest.json", _json(manifest))
                for name, content in members:
                    if isinstance(content, bytes):
                        archive.writestr(f"{root}/{name}", content)
                    else:
                        archive.write(content, f"{root}/{name}")
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def incident_bundle_request(*, incident: Incident, actor: str, enqueue: bool = True) -> RegulatorBundle:
    """Request a bundle of ``incident`` (audited) and queue it on the worker; a broker outage fails the row visibly.

    ``enqueue=False`` leaves the building to the caller (the ``incident_bundle`` command builds inline).
    """
    with transaction.atomic():
        bundle = RegulatorBundle.objects.create(incident=incident, requested_by=actor)
        audit_change_record(
            actor=actor,
            action="monitoring.incident_bundle_request",
            target=f"incident:{incident.pk}",
            after={"bundle_id": bundle.pk},
            event_type=AuditEvent.Type.MONITORING,
            extra={"incident_id": incident.pk, "bundle_id": bundle.pk, "model_name": incident.model_name},
        )

        def fail(exc: Exception) -> None:
            logger.error("could not enqueue bundle", extra={"bundle_id": bundle.pk, "error": str(exc)[:300]})
            RegulatorBundle.objects.filter(pk=bundle.pk).update(
                status=RegulatorBundle.Status.FAILED,
                error=f"The job queue is unavailable; the bundle was not built ({type(exc).__name__}).",
                finished_at=timezone.now(),
            )

        if enqueue:
            transaction.on_commit(lambda: task_enqueue(task=BUNDLE_TASK, args=(bundle.pk,), on_broker_failure=fail))
    return bundle


def incident_bundle_build(*, bundle_id: int) -> RegulatorBundle:
    """Build a requested bundle (idempotent: a finished bundle whose file exists is returned as is)."""
    bundle = regulator_bundle_get(bundle_id=bundle_id)
    if bundle.status == RegulatorBundle.Status.DONE and Path(bundle.file_path).exists():
        return bundle
    RegulatorBundle.objects.filter(pk=bundle.pk).update(status=RegulatorBundle.Status.RUNNING, error="")
    incident = Incident.objects.select_related("model_version", "alert__first_result", "alert__last_result").get(
        pk=bundle.incident_id
    )
    try:
        path = _write_archive(incident, bundle, bundle.requested_by)
    except Exception as exc:
        RegulatorBundle.objects.filter(pk=bundle.pk).update(
            status=RegulatorBundle.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    RegulatorBundle.objects.filter(pk=bundle.pk).update(
        status=RegulatorBundle.Status.DONE,
        file_path=str(path),
        sha256=_sha256_of(path),
        size=path.stat().st_size,
        finished_at=timezone.now(),
    )
    bundle.refresh_from_db()
    return bundle


def regulator_bundle_file(*, bundle_id: Any) -> Path:
    """The archive of a finished bundle; ``RegulatorBundleNotReady`` otherwise."""
    bundle = regulator_bundle_get(bundle_id=bundle_id)
    if bundle.status != RegulatorBundle.Status.DONE or not Path(bundle.file_path).exists():
        raise RegulatorBundleNotReady(f"Regulator bundle {bundle.pk} has no archive (status {bundle.status}).")
    return Path(bundle.file_path)
