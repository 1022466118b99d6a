"""Exports: both formats, every filter, signed manifests, offline verification that catches one edited row."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.canonical import canonical_json
from audit.errors import InvalidExportFilter
from audit.models import AuditEvent
from audit.selectors import ExportFilters, audit_public_key_info
from audit.services import audit_export_write, audit_seal
from audit.services.export import _pages
from audit.verify_export import verify_export
from tests.support import ROOT

from .conftest import trusted_pem
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _export(tmp_path: Path, fmt: str = "csv", **filters) -> tuple[Path, Path, dict]:
    path = tmp_path / f"export.{fmt}"
    with path.open("wb") as fh:
        manifest = audit_export_write(
            filters=ExportFilters(**filters), format=fmt, stream=fh, actor="staff:carol", file_name=path.name
        )
    manifest_path = tmp_path / f"export.{fmt}.manifest.json"
    manifest_path.write_text(canonical_json(manifest))
    return path, manifest_path, manifest


def _seqs(path: Path, fmt: str) -> list[int]:
    if fmt == "csv":
        with path.open(newline="") as fh:
            return [int(row["seq"]) for row in csv.DictReader(fh)]
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_full_export_verifies_offline(tmp_path, sealed, fmt):
    AuditEventFactory()  # newer than the last seal
    path, manifest_path, manifest = _export(tmp_path, fmt)
    assert _seqs(path, fmt) == [e.seq for e in AuditEvent.objects.exclude(event_type="audit.export").order_by("seq")]
    assert manifest["row_count"] == len(sealed) + 1
    assert manifest["unsealed_rows"] == 1
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [b["coverage"] for b in manifest["blocks"]] == ["full", "full", "full"]
    assert manifest["public_keys"][manifest["key_id"]] == audit_public_key_info()["public_key_pem"]
    report = verify_export(path, manifest_path, fingerprint=audit_public_key_info()["key_id"])
    assert report.ok, report.problems
    assert (report.rows, report.sealed_rows, report.unsealed_rows, report.full_blocks) == (13, 12, 1, 3)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tenant": "globex"}, lambda e: e.tenant_slug == "globex"),
        ({"model": "iris"}, lambda e: e.model_name == "iris"),
        ({"decision": "deny"}, lambda e: e.decision == "deny"),
        ({"event_type": "request"}, lambda e: True),
        (
            {"tenant": "acme", "decision": "allow", "model": "digits"},
            lambda e: e.tenant_slug == "acme" and e.decision == "allow" and e.model_name == "digits",
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_filtered_exports_carry_inclusion_proofs_and_verify(tmp_path, sealed, filters, expected, fmt):
    path, manifest_path, manifest = _export(tmp_path, fmt, **filters)
    wanted = [e.seq for e in sealed if expected(e)]
    assert _seqs(path, fmt) == wanted
    assert manifest["row_count"] == len(wanted)
    assert manifest["filters"]["tenant"] == filters.get("tenant", "")
    report = verify_export(path, manifest_path, public_key_pem=trusted_pem())
    assert report.ok, report.problems
    assert report.sealed_rows == len(wanted)


def test_time_range_filter(tmp_path, db):
    now = timezone.now()
    old = AuditEventFactory(occurred_at=now - timedelta(days=3))
    mid = AuditEventFactory(occurred_at=now - timedelta(days=2))
    AuditEventFactory(occurred_at=now - timedelta(days=1))
    audit_seal()
    path, manifest_path, _ = _export(tmp_path, "csv", since=mid.occurred_at, until=now - timedelta(days=1))
    assert _seqs(path, "csv") == [mid.seq]
    assert old.seq not in _seqs(path, "csv")
    assert verify_export(path, manifest_path, public_key_pem=trusted_pem()).ok


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("filters", [{}, {"tenant": "acme"}], ids=["full", "partial"])
def test_editing_one_row_fails_offline_verification(tmp_path, sealed, fmt, filters):
    path, manifest_path, _ = _export(tmp_path, fmt, **filters)
    assert verify_export(path, manifest_path, public_key_pem=trusted_pem()).ok
    lines = path.read_text().splitlines(keepends=True)
    target = 2  # a data row (after the CSV header, or the second JSON line)
    if fmt == "csv":
        lines[target] = lines[target].replace(",200,", ",201,", 1)
    else:
        lines[target] = lines[target].replace('"http_status":200', '"http_status":201', 1)
    path.write_text("".join(lines))
    report = verify_export(path, manifest_path, public_key_pem=trusted_pem())
    assert not report.ok
    assert any("SHA-256" in p for p in report.problems)
    edited_seq = _seqs(path, fmt)[target - 1 if fmt == "csv" else target]
    if filters:
        assert any(f"seq {edited_seq}" in p and "altered" in p for p in report.problems), report.problems
    else:
        assert any("Merkle root" in p for p in report.problems), report.problems


def test_manifest_tampering_is_caught(tmp_path, sealed):
    path, manifest_path, manifest = _export(tmp_path, "jsonl")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # drop a row and "fix" the manifest's hash and count
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["row_count"] -= 1
    manifest_path.write_text(json.dumps(manifest))
    report = verify_export(path, manifest_path, public_key_pem=trusted_pem())
    assert not report.ok
    assert any("manifest signature is invalid" in p for p in report.problems)
    assert any("block 3" in p for p in report.problems)


def test_untrusted_fingerprint_is_reported(tmp_path, sealed):
    path, manifest_path, _ = _export(tmp_path, "csv")
    report = verify_export(path, manifest_path, fingerprint="00" * 32)
    assert not report.ok and "trusted fingerprint" in report.problems[0]


def test_reordered_rows_fail(tmp_path, sealed):
    path, manifest_path, _ = _export(tmp_path, "jsonl")
    lines = path.read_text().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    path.write_text("".join(lines))
    report = verify_export(path, manifest_path, public_key_pem=trusted_pem())
    assert any("ascending sequence order" in p for p in report.problems)


def test_export_is_itself_an_audit_event(tmp_path, sealed):
    _, _, manifest = _export(tmp_path, "csv", tenant="acme")
    event = AuditEvent.objects.get(seq=manifest["export_event_seq"])
    assert event.event_type == AuditEvent.Type.EXPORT
    assert event.actor == "staff:carol"
    assert event.detail["filters"]["tenant"] == "acme"
    assert event.detail["format"] == "csv"
    assert event.detail["upper_seq"] == manifest["upper_seq"] < event.seq


def test_export_reads_in_bounded_pages(settings, sealed):
    settings.AUDIT_EXPORT_PAGE_SIZE = 4
    pages = list(_pages(AuditEvent.objects.all(), sealed[-1].seq, 4))
    assert [len(p) for p in pages] == [4, 4, 4]


def test_export_command_writes_file_and_manifest(tmp_path, sealed):
    output = tmp_path / "out" / "audit.jsonl"
    stdout = io.StringIO()
    call_command("export_audit", "--format", "jsonl", "--tenant", "acme", "--output", str(output), stdout=stdout)
    manifest_path = Path(f"{output}.manifest.json")
    assert output.exists() and manifest_path.exists()
    assert stat.S_IMODE(os.stat(output).st_mode) == 0o600
    assert "Exported 8 events" in stdout.getvalue()
    assert verify_export(output, manifest_path, public_key_pem=trusted_pem()).ok
    assert AuditEvent.objects.filter(event_type="audit.export", actor__startswith="command:export_audit").exists()


def test_offline_verifier_runs_without_django(tmp_path, sealed):
    path, manifest_path, _ = _export(tmp_path, "csv", tenant="globex")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    check = "import sys, audit.verify_export; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path).returncode == 0
    command = [sys.executable, "-m", "audit.verify_export", str(path), str(manifest_path)]
    unpinned = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert unpinned.returncode == 1 and "no trusted key pinned" in unpinned.stdout
    key_file = tmp_path / "audit-key.pem"
    key_file.write_text(trusted_pem())
    pinned = [*command, "--public-key", str(key_file)]
    ok = subprocess.run(pinned, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    path.write_text(path.read_text().replace("globex", "globez", 1))
    failed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout
    missing = subprocess.run([*command[:-1], str(tmp_path / "nope.json")], env=env, capture_output=True, text=True)
    assert missing.returncode == 2


def test_the_pre_move_command_named_by_older_manifests_still_verifies(tmp_path, sealed):
    """``python -m policy.audit.verify_export`` (the path before audit became an app) is a working shim."""
    path, manifest_path, _ = _export(tmp_path, "csv", tenant="globex")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    check = "import sys, policy.audit.verify_export; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path).returncode == 0
    command = [sys.executable, "-m", "policy.audit.verify_export", str(path), str(manifest_path)]
    unpinned = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert unpinned.returncode == 1 and "no trusted key pinned" in unpinned.stdout
    key_file = tmp_path / "audit-key.pem"
    key_file.write_text(trusted_pem())
    pinned = [*command, "--public-key", str(key_file)]
    ok = subprocess.run(pinned, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    path.write_text(path.read_text().replace("globex", "globez", 1))
    failed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01", "2026-03-01T00:00:00.000000Z"),
        ("2026-03-01T10:00:00Z", "2026-03-01T10:00:00.000000Z"),
        ("2026-03-01T12:00:00+02:00", "2026-03-01T10:00:00.000000Z"),
    ],
)
def test_filter_dates_are_read_as_utc(raw, expected):
    assert ExportFilters.from_mapping({"since": raw}).as_dict()["since"] == expected


def test_invalid_filters_are_domain_errors():
    with pytest.raises(InvalidExportFilter):
        ExportFilters.from_mapping({"since": "2026-03-02", "until": "2026-03-01"})
    with pytest.raises(InvalidExportFilter):
        ExportFilters.from_mapping({"event_type": "bogus"})


def test_an_export_resigned_with_a_fresh_key_fails_without_any_flag(tmp_path, sealed, settings):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.services import sealing
    from audit.services.checkpoints import checkpoint_log

    from .conftest import raw_update, tampering

    saved = tmp_path / "saved-checkpoint.json"
    saved.write_bytes(checkpoint_log().checkpoint_path(1, 3).read_bytes())
    # The forger edits an event, wipes the seal, re-seals and exports with a key of their own.
    raw_update(sealed[4].seq, decision="allow", http_status=200, reason_code="allowed")
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_sealedblock")
        cursor.execute("DELETE FROM audit_sealstate")
    fresh = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    original_pem = trusted_pem()
    settings.AUDIT_SIGNING_KEY = fresh.decode()
    sealing._seal_loop(max_blocks=None, on_block=None)
    (tmp_path / "forged").mkdir()
    path, manifest_path, _ = _export(tmp_path / "forged", "jsonl")
    assert verify_export(path, manifest_path, trust_manifest_key=True).ok  # what the verifier accepted before
    unpinned = verify_export(path, manifest_path)
    assert not unpinned.ok and "no trusted key pinned" in unpinned.problems[0]
    assert not verify_export(path, manifest_path, public_key_pem=original_pem).ok
    from audit.verify_export import load_checkpoints

    by_checkpoint = verify_export(path, manifest_path, checkpoints=load_checkpoints(saved))
    assert not by_checkpoint.ok
    assert any("saved checkpoints" in p for p in by_checkpoint.problems), by_checkpoint.problems
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "policy.audit.verify_export", str(path), str(manifest_path)]
    assert subprocess.run(command, env=env, cwd=tmp_path, capture_output=True).returncode == 1
    with_checkpoint = [*command, "--checkpoint", str(saved)]
    assert subprocess.run(with_checkpoint, env=env, cwd=tmp_path, capture_output=True).returncode == 1


def test_a_saved_checkpoint_pins_the_key_and_the_blocks_it_covers(tmp_path, sealed):
    from audit.services.checkpoints import checkpoint_log
    from audit.verify_export import load_checkpoints

    path, manifest_path, _ = _export(tmp_path, "csv")
    report = verify_export(path, manifest_path, checkpoints=load_checkpoints(checkpoint_log().root))
    assert report.ok, report.problems
