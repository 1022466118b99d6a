"""Checkpoints outside the database: written per block, guarded by the sealer, checked by verify_audit.

The attack tests replay what someone with write access to the database (and,
where said, the signing key) could do, then re-seal with the guard-less
sealing loop -- exactly what ``audit_seal`` did before checkpoints -- and show
that the database chain verifies on its own (``checkpoints=False``: the old
verification) but not against the checkpoints that left the database earlier.
"""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from prometheus_client import REGISTRY

from audit.blocks import load_public_key
from audit.checkpoints import (
    CHECKPOINT_FIELDS,
    CheckpointConflict,
    CheckpointLog,
    document_bytes,
    document_problem,
)
from audit.errors import AuditChainMismatch, AuditCheckpointWriteFailed
from audit.models import AuditEvent, SealedBlock, SealState
from audit.selectors import audit_public_key_info
from audit.services import audit_seal, audit_verify
from audit.services import sealing as sealing_module
from audit.services.checkpoints import Sink, checkpoint_log
from audit.services.verification import CHECKPOINT

from .conftest import raw_update, tampering
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _keys() -> dict:
    info = audit_public_key_info()
    return {info["key_id"]: load_public_key(info["public_key_pem"])}


def _legacy_reseal() -> list[int]:
    """Re-sign whatever the database holds now, as the sealer before checkpoints did (no guard)."""
    return sealing_module._seal_loop(max_blocks=None, on_block=None).blocks


def _wipe_seal_tables(from_block: int = 1) -> None:
    """Delete blocks from ``from_block`` on and rewind the seal state, as a database superuser could."""
    previous = SealedBlock.objects.filter(number=from_block - 1).first()
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_sealedblock WHERE number >= %s", [from_block])
        if previous is None:
            cursor.execute("DELETE FROM audit_sealstate")
        else:
            cursor.execute(
                "UPDATE audit_sealstate SET head_number = %s, head_hash = %s, head_last_seq = %s",
                [previous.number, previous.block_hash, previous.last_seq],
            )


def _refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("maas_audit_seal_refusals_total", {"reason": reason}) or 0.0


def _run(command: str, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + err.getvalue() + str(exc)
    return 0, out.getvalue()


def _assert_checkpoint_failure(first_block: int, words: str) -> None:
    assert audit_verify(checkpoints=False).ok  # the database chain alone: what verify_audit checked before
    report = audit_verify()
    assert not report.ok
    first = report.first_problem
    assert first.kind == CHECKPOINT and first.block == first_block, report.problems
    assert words in first.message, first.message
    code, output = _run("verify_audit")
    assert code == 1 and f"block {first_block}" in output


# -- writing -----------------------------------------------------------------------------------
def test_each_sealed_block_gets_a_signed_checkpoint_outside_the_database(sealed, settings):
    log = checkpoint_log()
    assert Path(settings.AUDIT_CHECKPOINT_DIR) == log.root
    assert log.epochs() == [1] and log.numbers(1) == [1, 2, 3]
    assert log.chain_start(1)["after_block"] == 0
    for block in SealedBlock.objects.order_by("number"):
        checkpoint = log.get(1, block.number)
        assert set(checkpoint) == {*CHECKPOINT_FIELDS, "signature"}
        assert document_problem(checkpoint, _keys()) is None
        assert (checkpoint["number"], checkpoint["last_seq"], checkpoint["block_hash"], checkpoint["merkle_root"]) == (
            block.number,
            block.last_seq,
            block.block_hash,
            block.merkle_root,
        )
        assert checkpoint["key_fingerprint"] == audit_public_key_info()["fingerprint"]
    assert audit_verify().ok


def test_checkpoint_files_are_never_rewritten(sealed):
    log = checkpoint_log()
    path = log.checkpoint_path(1, 2)
    original = path.read_bytes()
    assert log.put(json.loads(original)) is False  # identical bytes: a no-op
    forged = json.loads(original) | {"merkle_root": "00" * 32}
    with pytest.raises(CheckpointConflict):
        log.put(forged)
    assert path.read_bytes() == original


def test_a_checkpoint_altered_on_disk_is_reported(sealed):
    path = checkpoint_log().checkpoint_path(1, 2)
    path.write_bytes(path.read_bytes().replace(b'"last_seq":', b'"last_seq":1', 1))
    report = audit_verify()
    assert not report.ok and report.first_problem.kind == CHECKPOINT and report.first_problem.block == 2
    assert "signature does not verify" in report.first_problem.message


# -- the attacks of the issue --------------------------------------------------------------------
def test_wiped_seal_tables_and_reseal_fail_verification(sealed):
    _wipe_seal_tables()
    before = _refusals("head_missing")
    with pytest.raises(AuditChainMismatch, match="block 3"):
        audit_seal()
    assert _refusals("head_missing") == before + 1
    alarm = AuditEvent.objects.get(event_type=AuditEvent.Type.ALARM)
    assert alarm.action == "seal.refused" and alarm.reason_code == "head_missing"
    code, output = _run("seal_audit")
    assert code == 1 and "REFUSED" in output
    assert _legacy_reseal() == [1, 2, 3]  # the forgery: same events, re-signed with the real key
    _assert_checkpoint_failure(1, "differs from its checkpoint")


def test_deleting_only_the_last_block_and_rewinding_fails(sealed):
    _wipe_seal_tables(from_block=3)
    with pytest.raises(AuditChainMismatch, match="block 3"):
        audit_seal()
    report = audit_verify()
    assert report.first_problem.kind == CHECKPOINT and report.first_problem.block == 3
    assert "missing from the database" in report.first_problem.message
    assert _legacy_reseal() == [3]
    _assert_checkpoint_failure(3, "differs from its checkpoint")


def test_editing_an_event_then_resealing_fails(sealed):
    victim = sealed[6]  # in block 2
    raw_update(victim.seq, decision="deny", http_status=403)
    assert not audit_verify(checkpoints=False).ok  # caught by the seal as it stands
    _wipe_seal_tables(from_block=2)
    assert _legacy_reseal() == [2, 3]
    _assert_checkpoint_failure(2, "differs from its checkpoint")


def test_replacing_the_signing_key_and_resigning_fails(sealed, settings):
    fresh = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    settings.AUDIT_SIGNING_KEY = fresh.decode()
    _wipe_seal_tables()
    with pytest.raises(AuditChainMismatch):
        audit_seal()  # the old checkpoints are not signed by the (new) trusted key
    assert _legacy_reseal() == [1, 2, 3]
    assert audit_verify(checkpoints=False).ok
    report = audit_verify()
    assert not report.ok and all(p.kind == CHECKPOINT for p in report.problems)
    messages = " | ".join(p.message for p in report.problems)
    assert "not trusted here" in messages and "checkpoints 1-3 missing" in messages


def test_truncating_the_checkpoint_directory_names_the_missing_checkpoints(sealed):
    log = checkpoint_log()
    for number in (2, 3):
        log.checkpoint_path(1, number).unlink()
    report = audit_verify()
    assert not report.ok
    assert report.first_problem.kind == CHECKPOINT and report.first_problem.block == 2
    assert "checkpoints 2-3 missing" in report.first_problem.message
    with pytest.raises(AuditChainMismatch, match="blocks 2-3"):
        audit_seal()  # more than the one block a crash can leave unrecorded is not "caught up" silently


def test_deleting_the_whole_checkpoint_log_names_every_missing_checkpoint(sealed):
    import shutil

    shutil.rmtree(checkpoint_log().root)
    assert "checkpoints 1-3 missing" in audit_verify().first_problem.message
    with pytest.raises(AuditChainMismatch, match="empty"):
        audit_seal()


# -- the guard itself ----------------------------------------------------------------------------
def test_a_rewound_seal_state_alone_is_refused(sealed):
    with tampering() as cursor:
        cursor.execute("UPDATE audit_sealstate SET head_number = 2")
    with pytest.raises(AuditChainMismatch, match="seal state"):
        audit_seal()


def test_events_waiting_with_no_chain_started_are_refused_without_auto_start(settings, events):
    settings.AUDIT_CHAIN_AUTO_START = False
    with pytest.raises(AuditChainMismatch, match="no audit chain"):
        audit_seal()
    assert not SealedBlock.objects.exists()
    code, _ = _run("audit_chain_start", "--reason", "initial deployment")
    assert code == 0
    assert audit_seal().blocks == [1, 2, 3]
    assert audit_verify().ok


def test_a_missing_checkpoint_after_a_crash_is_written_on_the_next_run(sealed):
    log = checkpoint_log()
    path = log.checkpoint_path(1, 3)
    original = path.read_bytes()
    path.unlink()  # as if the process died between the block's commit and its checkpoint
    AuditEventFactory()
    assert audit_seal().blocks == [4]
    assert path.read_bytes() == original  # deterministic: the same bytes
    assert log.numbers(1) == [1, 2, 3, 4]
    assert audit_verify().ok


def test_primary_log_failure_stops_sealing_until_it_is_fixed(settings, events, tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    settings.AUDIT_CHECKPOINT_DIR = str(blocked)
    with pytest.raises(AuditCheckpointWriteFailed):
        audit_seal()  # the chain cannot even start: nothing is sealed
    assert not SealedBlock.objects.exists()
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "cp")
    assert audit_seal(max_blocks=1).blocks == [1]

    def disk_full(self, path, content):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(CheckpointLog, "write", disk_full)
        with pytest.raises(AuditCheckpointWriteFailed, match="No space"):
            audit_seal(max_blocks=1)
    assert SealedBlock.objects.count() == 2  # block 2 committed, its checkpoint not written
    assert checkpoint_log().numbers(1) == [1]
    assert audit_seal().blocks == [3]  # checkpoint 2 is written first, then sealing goes on
    assert checkpoint_log().numbers(1) == [1, 2, 3]
    assert audit_verify().ok


def test_explicit_chain_start_opens_a_new_epoch_visible_to_verification(sealed):
    _wipe_seal_tables()  # e.g. a restore from a backup taken before any block was sealed
    code, output = _run("audit_chain_start", "--reason", "")
    assert code == 2 and "reason" in output
    code, output = _run("audit_chain_start", "--reason", "restored database from backup 2026-11-28")
    assert code == 0 and "epoch 2" in output and "left epoch 1 at checkpoint 3" in output
    record = checkpoint_log().chain_start(2)
    assert document_problem(record, _keys(), kind="maas-audit-chain-start") is None
    assert record["previous"]["number"] == 3 and record["after_block"] == 0
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.CHAIN_START)
    assert event.detail["reason"] == "restored database from backup 2026-11-28"
    assert audit_seal().blocks == [1, 2, 3]
    assert checkpoint_log().numbers(2) == [1, 2, 3]
    report = audit_verify()
    assert report.ok, report.problems
    assert report.chain_restarts and "restored database" in report.chain_restarts[0]
    assert SealState.objects.get().head_number == 3


# -- --checkpoint FILE ------------------------------------------------------------------------------
def test_verify_audit_checks_a_checkpoint_saved_earlier(sealed, tmp_path):
    saved = tmp_path / "saved.json"
    saved.write_bytes(checkpoint_log().checkpoint_path(1, 2).read_bytes())
    code, output = _run("verify_audit", "--checkpoint", str(saved))
    assert code == 0 and "is in the trail" in output
    # The attacker also replaces the whole log with one matching the forgery: the saved copy still tells.
    import shutil

    _wipe_seal_tables()
    shutil.rmtree(checkpoint_log().root)
    call_command("audit_chain_start", "--reason", "cover-up", stdout=io.StringIO())
    assert audit_seal().blocks == [1, 2, 3]
    code, output = _run("verify_audit", "--checkpoint", str(saved))
    assert code == 1 and "saved.json" in output and "re-sealed" in output
    code, output = _run("verify_audit", "--checkpoint", str(tmp_path / "nope.json"))
    assert code == 2


# -- sinks --------------------------------------------------------------------------------------------
def test_directory_sink_gets_a_copy_and_catches_up_after_a_failure(settings, events, tmp_path):
    mirror = tmp_path / "mirror"
    broken = tmp_path / "broken"
    broken.write_text("")  # a file where a directory should be: every write fails
    settings.AUDIT_CHECKPOINT_SINKS = [str(broken)]
    label = {"sink": Sink("dir", str(broken)).label}
    before = REGISTRY.get_sample_value("maas_audit_checkpoint_sink_failures_total", label) or 0
    assert audit_seal().blocks == [1, 2, 3]  # best effort: sealing goes on
    assert REGISTRY.get_sample_value("maas_audit_checkpoint_sink_failures_total", label) > before
    settings.AUDIT_CHECKPOINT_SINKS = [str(mirror)]
    AuditEventFactory()
    assert audit_seal().blocks == [4]
    assert CheckpointLog(mirror).numbers(1) == [1, 2, 3, 4]  # the backlog was delivered too
    assert (
        CheckpointLog(mirror).checkpoint_path(1, 2).read_bytes() == checkpoint_log().checkpoint_path(1, 2).read_bytes()
    )


def test_required_sink_failure_fails_the_seal_run(settings, events, tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("")
    settings.AUDIT_CHECKPOINT_SINKS = [str(broken)]
    settings.AUDIT_CHECKPOINT_SINKS_REQUIRED = True
    with pytest.raises(AuditCheckpointWriteFailed, match="broken"):
        audit_seal()
    assert SealedBlock.objects.count() == 0  # the chain start could not reach the sink: nothing sealed


class _Witness(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(body)
        answer = json.dumps({"witness": "test-witness", "signature": "ab" * 32, "number": body["number"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_http_witness_receives_each_checkpoint_and_its_signature_is_kept(settings, events):
    server = HTTPServer(("127.0.0.1", 0), _Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Witness.received = []
    try:
        url = f"http://127.0.0.1:{server.server_port}/checkpoints"
        settings.AUDIT_CHECKPOINT_SINKS = [url]
        assert audit_seal().blocks == [1, 2, 3]
    finally:
        server.shutdown()
        server.server_close()
    assert [c["number"] for c in _Witness.received] == [1, 2, 3]
    log = checkpoint_log()
    assert document_bytes(_Witness.received[0]) == log.checkpoint_path(1, 1).read_bytes()
    label = f"127-0-0-1-{server.server_port}-checkpoints"
    stored = json.loads(log.witness_path(1, 3, label).read_text())
    assert stored["response"]["signature"] == "ab" * 32 and stored["witness"] == url
    assert log.numbers(1) == [1, 2, 3]  # countersignatures are not mistaken for checkpoints


def test_a_trail_sealed_before_checkpoints_is_adopted_explicitly(events):
    assert _legacy_reseal() == [1, 2, 3]  # sealed by a version without checkpoints
    with pytest.raises(AuditChainMismatch, match="empty"):
        audit_seal()
    assert "checkpoints 1-3 missing" in audit_verify().first_problem.message
    call_command("audit_chain_start", "--reason", "adopt the trail sealed before checkpoints", stdout=io.StringIO())
    assert checkpoint_log().chain_start(1)["after_block"] == 3
    assert audit_seal().blocks == [4]  # the alarm and the chain-start events
    report = audit_verify()
    assert report.ok, report.problems
    assert checkpoint_log().numbers(1) == [4]
