"""Verification of the sealed trail against the database (``verify_audit``).

For every sealed block, in number order, it recomputes what the sealer
signed and compares:

* the header hash and Ed25519 signature (with a trusted key), the hash chain
  to the previous block (or purge tombstone), and sequence contiguity;
* the stored per-event leaf hashes against the signed Merkle root;
* every event row, re-read in sequence order and re-serialised, against its
  sealed leaf.  The sealed event ids tell *what kind* of change happened:
  a row whose leaf differs but whose id is the sealed one was **altered**; a
  row carrying another sealed event's id was **reordered**; a sealed seq whose
  row is gone is **missing** (deleted); a row in a signed gap or a purged
  range was **inserted**.

Purged ranges (signed tombstones) are reported as purged, never as missing.
The result is a :class:`VerifyReport`; the first problem in sequence order is
``report.first_problem``.

Bounded time: a daily check must not rescan years of events.  Every passing
run that covered an unbroken chain records, in its ``audit.verify`` event,
the block it verified through (number, hash, last seq), signed with the audit
key.  The next run (unless ``full``) starts after that block: it checks that
the block still hashes to what was recorded, that the next block chains to
it, and then verifies only what came after, including the block that holds
the recording event itself.  The record is evidence only when it verifies:
no record, a malformed or unsigned one, one that claims more than it could
have seen, or an anchor block that is gone means a full pass (and a changed
anchor block is reported as well).  Incremental runs do not re-read older
events; a periodic full pass (``--full``, the weekly beat entry) does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.blocks import SeqLayout, header_bytes, header_hash, verify_signature
from audit.canonical import FIELDS_BY_VERSION, canonical_bytes, canonical_event, canonical_json
from audit.merkle import leaf_hash, merkle_root
from audit.models import AuditEvent, PurgeTombstone, SealedBlock, SealState
from audit.signing import signing_identity, trusted_public_keys

_FETCH_CHUNK = 2000

ALTERED = "altered"
MISSING = "missing"
INSERTED = "inserted"
REORDERED = "reordered"
BLOCK = "block"
CHAIN = "chain"
MISSING_BLOCK = "missing_block"
TOMBSTONE = "tombstone"
CHECKPOINT = "checkpoint"

# The action of the events that record a verification's outcome (see audit.services.oversight).
VERIFY_ACTION = "audit.verify"
VERIFIED_THROUGH_KIND = "maas-audit-verified-through"
# How many recent verification events are looked at for a trusted anchor.
_ANCHOR_CANDIDATES = 50

FULL = "full"
INCREMENTAL = "incremental"
SINCE = "since"


@dataclass(frozen=True)
class VerifyProblem:
    """One finding: what kind, where (block, seq, event id) and a readable sentence."""

    kind: str
    block: int | None
    seq: int | None
    event_id: str | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class PurgedRange:
    """A range removed lawfully by the retention purge (from a verified tombstone)."""

    first_block: int
    last_block: int
    first_seq: int
    last_seq: int
    event_count: int
    purged_at: str


@dataclass
class VerifyReport:
    """Everything ``verify_audit`` prints."""

    blocks_verified: int = 0
    events_verified: int = 0
    gap_seqs: int = 0
    unsealed_events: int = 0
    head_block: int = 0
    purged: list[PurgedRange] = field(default_factory=list)
    problems: list[VerifyProblem] = field(default_factory=list)
    problem_count: int = 0
    max_problems: int = 100
    checkpoints_checked: int = 0
    chain_restarts: list[str] = field(default_factory=list)
    mode: str = FULL
    from_block: int = 1
    anchor_seq: int | None = None
    fallback: str = ""
    verified_through: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.problem_count == 0

    @property
    def first_problem(self) -> VerifyProblem | None:
        """The first problem in block/sequence order."""
        return self.problems[0] if self.problems else None

    @property
    def purged_events(self) -> int:
        """Events removed by the purge (all tombstones seen)."""
        return sum(p.event_count for p in self.purged)

    def add(self, problem: VerifyProblem) -> None:
        """Record a problem (keeps the first ``max_problems``, counts all)."""
        self.problem_count += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def summary(self) -> str:
        """One paragraph for humans."""
        parts = []
        if self.mode == INCREMENTAL:
            parts.append(
                f"Incremental pass from block {self.from_block} (blocks up to {self.from_block - 1} were verified "
                f"by the run recorded at seq {self.anchor_seq})."
            )
        elif self.mode == FULL and self.fallback:
            parts.append(f"Full pass ({self.fallback}).")
        parts += [
            f"Verified {self.blocks_verified} sealed blocks ({self.events_verified} events, "
            f"{self.gap_seqs} rolled-back sequence numbers listed as gaps)."
        ]
        if self.purged:
            ranges = ", ".join(f"seq {p.first_seq}-{p.last_seq}" for p in self.purged[:5])
            parts.append(
                f"Purged by retention: {sum(p.last_block - p.first_block + 1 for p in self.purged)} blocks, "
                f"{self.purged_events} events ({ranges}{', ...' if len(self.purged) > 5 else ''})."
            )
        parts.append(f"{self.unsealed_events} events are not sealed yet.")
        if self.checkpoints_checked:
            parts.append(f"Compared with {self.checkpoints_checked} checkpoints kept outside the database.")
        parts.extend(f"Chain restart: {text}." for text in self.chain_restarts)
        return " ".join(parts)


def _event_label(seq: int | None, event_id: str | None) -> str:
    return f"seq {seq}" + (f" (event {event_id})" if event_id else "")


class _BlockChecker:
    """Compares one block's rows against its sealed leaves and ids."""

    def __init__(self, block: SealedBlock, report: VerifyReport):
        self.block = block
        self.report = report
        self.layout = SeqLayout(block.first_seq, block.last_seq, block.gaps)
        self.leaves = bytes(block.leaf_hashes)
        self.ids = bytes(block.event_ids)
        self._id_index: dict[bytes, int] | None = None

    def sealed_id(self, index: int) -> str:
        """Event id sealed at leaf ``index``."""
        return str(uuid.UUID(bytes=self.ids[index * 16 : index * 16 + 16]))

    def index_of_id(self, raw: bytes) -> int | None:
        """Leaf index at which an event id was sealed (built lazily: only mismatches need it)."""
        if self._id_index is None:
            self._id_index = {self.ids[i : i + 16]: i // 16 for i in range(0, len(self.ids), 16)}
        return self._id_index.get(raw)

    def problem(self, kind: str, seq: int | None, event_id: str | None, text: str) -> None:
        """Record an event-level problem in this block."""
        self.report.add(
            VerifyProblem(kind, self.block.number, seq, event_id, f"block {self.block.number}: {kind} {text}")
        )

    def check_structure(self, trusted: dict[str, Any], expected_prev: str | None, expected_first: int | None) -> bool:
        """Header, signature, chain and leaf list; False when event checks would be meaningless."""
        block = self.block
        header = block.header()
        ok = True
        if header_hash(header) != block.block_hash:
            self.problem(BLOCK, None, None, "header fields no longer hash to the block hash (block row altered)")
            ok = False
        key = trusted.get(block.key_id)
        if key is None:
            self.problem(BLOCK, None, None, f"signed by untrusted key {block.key_id}")
            ok = False
        elif not verify_signature(key, header_bytes(header), block.signature):
            self.problem(BLOCK, None, None, "signature does not verify (block row altered or forged)")
            ok = False
        if expected_prev is not None and block.prev_block_hash != expected_prev:
            self.report.add(
                VerifyProblem(
                    CHAIN,
                    block.number,
                    None,
                    None,
                    f"block {block.number}: chain broken: prev_block_hash does not match the previous block",
                )
            )
        if expected_first is not None and block.first_seq != expected_first:
            self.report.add(
                VerifyProblem(
                    CHAIN,
                    block.number,
                    block.first_seq,
                    None,
                    f"block {block.number}: starts at seq {block.first_seq}, expected {expected_first}",
                )
            )
        if not self.layout.is_valid() or self.layout.count != block.count:
            self.problem(BLOCK, None, None, "sequence range, gaps and count are inconsistent")
            return False
        if len(self.leaves) != 32 * block.count or len(self.ids) != 16 * block.count:
            self.problem(BLOCK, None, None, "stored leaf hashes or event ids have the wrong length")
            return False
        leaves = [self.leaves[i : i + 32] for i in range(0, len(self.leaves), 32)]
        if merkle_root(leaves).hex() != block.merkle_root:
            self.problem(BLOCK, None, None, "stored leaf hashes do not rebuild the signed Merkle root")
            ok = False
        return ok

    def check_events(self) -> None:
        """Walk the block's rows in seq order against the sealed leaves."""
        block = self.block
        fields = FIELDS_BY_VERSION[block.canonical_version]
        rows = (
            AuditEvent.objects.filter(seq__gte=block.first_seq, seq__lte=block.last_seq)
            .order_by("seq")
            .values_list(*fields)
        )
        expected = self.layout.seqs()
        next_expected = next(expected, None)
        for row in rows.iterator(chunk_size=_FETCH_CHUNK):
            seq, event_uuid = row[0], row[1]
            while next_expected is not None and next_expected < seq:
                self._missing(next_expected)
                next_expected = next(expected, None)
            if next_expected == seq:
                next_expected = next(expected, None)
            index = self.layout.index(seq)
            if index is None:
                self.problem(
                    INSERTED,
                    seq,
                    str(event_uuid),
                    f"event {_event_label(seq, str(event_uuid))}: a row exists where the seal recorded no event",
                )
                continue
            self.report.events_verified += 1
            leaf = leaf_hash(canonical_bytes(canonical_event(row, version=block.canonical_version)))
            if leaf == self.leaves[index * 32 : index * 32 + 32]:
                continue
            sealed_id = self.sealed_id(index)
            if str(event_uuid) == sealed_id:
                self.problem(
                    ALTERED, seq, sealed_id, f"event {_event_label(seq, sealed_id)}: content differs from the seal"
                )
                continue
            other = self.index_of_id(event_uuid.bytes)
            if other is not None:
                sealed_seq = self.layout.seq_at(other)
                self.problem(
                    REORDERED,
                    seq,
                    str(event_uuid),
                    f"event {_event_label(seq, str(event_uuid))}: sealed at seq {sealed_seq}, "
                    f"now found at seq {seq} (events reordered)",
                )
            else:
                self.problem(
                    ALTERED,
                    seq,
                    sealed_id,
                    f"event {_event_label(seq, sealed_id)}: replaced by a row with unknown event id {event_uuid}",
                )
        while next_expected is not None:
            self._missing(next_expected)
            next_expected = next(expected, None)

    def _missing(self, seq: int) -> None:
        index = self.layout.index(seq)
        sealed_id = self.sealed_id(index) if index is not None else None
        self.problem(MISSING, seq, sealed_id, f"event {_event_label(seq, sealed_id)}: sealed but deleted")


def _verify_tombstone(tomb: PurgeTombstone, trusted: dict[str, Any], report: VerifyReport) -> bool:
    header = tomb.header()
    key = trusted.get(tomb.key_id)
    if header_hash(header) != tomb.tombstone_hash or key is None:
        report.add(
            VerifyProblem(
                TOMBSTONE,
                tomb.first_block,
                tomb.first_seq,
                None,
                f"purge tombstone for blocks {tomb.first_block}-{tomb.last_block} is altered or signed by an "
                "untrusted key",
            )
        )
        return False
    if not verify_signature(key, header_bytes(header), tomb.signature):
        report.add(
            VerifyProblem(
                TOMBSTONE,
                tomb.first_block,
                tomb.first_seq,
                None,
                f"purge tombstone for blocks {tomb.first_block}-{tomb.last_block}: signature does not verify",
            )
        )
        return False
    return True


def _chain_items(since: datetime | None, after_block: int = 0) -> Iterator[SealedBlock | PurgeTombstone]:
    """Blocks and tombstones in chain order (blocks without their large blobs until needed)."""
    blocks = SealedBlock.objects.order_by("number")
    tombs_query = PurgeTombstone.objects.order_by("first_block")
    if since is not None:
        blocks = blocks.filter(last_occurred_at__gte=since)
    if after_block:
        blocks = blocks.filter(number__gt=after_block)
        tombs_query = tombs_query.filter(first_block__gt=after_block)
    tombs = list(tombs_query)
    ti = 0
    for block in blocks.iterator(chunk_size=10):
        while ti < len(tombs) and tombs[ti].first_block < block.number:
            yield tombs[ti]
            ti += 1
        yield block
    yield from tombs[ti:]


# -- the recorded "verified through" state -------------------------------------------
@dataclass(frozen=True)
class VerifiedAnchor:
    """Where a previous passing run stopped: the block it verified through, and the event that says so."""

    block: int
    block_hash: str
    last_seq: int
    event_seq: int


def _verified_through_body(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": VERIFIED_THROUGH_KIND,
        "block": state["block"],
        "block_hash": state["block_hash"],
        "last_seq": state["last_seq"],
        "key_id": state["key_id"],
    }


def verified_through_sign(*, block: int, block_hash: str, last_seq: int) -> dict[str, Any]:
    """The signed "verified through" state a passing run records in its ``audit.verify`` event.

    Signed with the audit key, so that someone who can write to the database
    but does not hold the key cannot move the next run's starting point.
    """
    identity = signing_identity()
    state = {"block": block, "block_hash": block_hash, "last_seq": last_seq, "key_id": identity.key_id}
    state["signature"] = identity.sign(canonical_json(_verified_through_body(state)).encode("ascii"))
    return state


def _anchor_problem(state: Any, event_seq: int) -> str | None:
    """Why a recorded state cannot be trusted as a starting point; ``None`` when it can."""
    if not isinstance(state, dict):
        return "no verified-through state"
    try:
        block, last_seq = state["block"], state["last_seq"]
        body = _verified_through_body(state)
        signature = state["signature"]
    except KeyError as exc:
        return f"its verified-through state lacks {exc}"
    if type(block) is not int or type(last_seq) is not int or block < 1 or not isinstance(signature, str):
        return "its verified-through state is malformed"
    key = trusted_public_keys().get(str(state["key_id"]))
    if key is None:
        return "its verified-through state is signed by an untrusted key"
    if not verify_signature(key, canonical_json(body).encode("ascii"), signature):
        return "its verified-through state does not verify (altered)"
    # The run recorded its outcome after verifying: its own event comes later than
    # anything it saw, which also puts that event inside the next incremental range.
    if event_seq <= last_seq:
        return f"it claims seq {last_seq}, beyond its own event {event_seq}"
    return None


def verified_anchor_get() -> tuple[VerifiedAnchor | None, str]:
    """The newest trustworthy recorded state, or ``None`` and why a full pass is needed.

    Only ``audit.verify`` events that passed are candidates; the newest one
    decides.  An absent, altered or implausible record is never trusted.
    """
    # (event_type, occurred_at) is indexed: an ORDER BY seq with a filter would
    # walk the whole primary key backwards when no verification was ever recorded.
    candidates = list(
        AuditEvent.objects.filter(event_type=AuditEvent.Type.VERIFY, action=VERIFY_ACTION)
        .order_by("-occurred_at", "-seq")
        .values_list("seq", "detail")[:_ANCHOR_CANDIDATES]
    )
    candidates.sort(key=lambda row: row[0], reverse=True)
    newest_problem = ""
    for seq, detail in candidates:
        if not isinstance(detail, dict) or detail.get("ok") is not True:
            continue
        state = detail.get("verified_through")
        problem = _anchor_problem(state, seq)
        if problem is None:
            return VerifiedAnchor(state["block"], str(state["block_hash"]), state["last_seq"], seq), ""
        newest_problem = newest_problem or f"the verification recorded at seq {seq} is not trusted: {problem}"
        break  # the newest passing record decides; an older one would hide whatever made it untrustworthy
    return None, newest_problem or "no passing verification is recorded"


def _anchor_link(anchor: VerifiedAnchor) -> tuple[bool, str]:
    """(usable, problem): whether the anchor block still is what the record says."""
    block = SealedBlock.objects.defer("leaf_hashes", "event_ids").filter(number=anchor.block).first()
    if block is not None:
        if header_hash(block.header()) != block.block_hash or (block.block_hash, block.last_seq) != (
            anchor.block_hash,
            anchor.last_seq,
        ):
            return False, (
                f"block {anchor.block}: differs from the state recorded as verified at seq {anchor.event_seq} "
                "(block row altered or re-sealed)"
            )
        return True, ""
    tomb = PurgeTombstone.objects.filter(last_block=anchor.block).first()
    if tomb is not None and (tomb.last_block_hash, tomb.last_seq) == (anchor.block_hash, anchor.last_seq):
        return True, ""
    return False, ""


def _previous_link(number: int) -> tuple[str, int] | None:
    """Hash and next expected first seq of whatever precedes block ``number`` (for --since)."""
    prev = SealedBlock.objects.filter(number=number - 1).only("block_hash", "last_seq").first()
    if prev is not None:
        return prev.block_hash, prev.last_seq + 1
    tomb = PurgeTombstone.objects.filter(last_block=number - 1).first()
    if tomb is not None:
        return tomb.last_block_hash, tomb.last_seq + 1
    return None


def audit_verify(
    *, since: datetime | None = None, full: bool = False, max_problems: int = 100, checkpoints: bool = True
) -> VerifyReport:
    """Recompute sealed blocks against the database: incrementally, fully, or those with events since ``since``.

    Without ``full`` (and without ``since``) the pass starts after the block
    the newest trustworthy recorded verification covered (see the module
    docstring) and falls back to a full pass when there is none.  Then
    (unless ``checkpoints`` is False) the chain is compared with the checkpoint
    log outside the database (from the starting block on): a rewound,
    truncated or re-sealed trail verifies internally, but not against what
    left the database earlier.
    """
    report = VerifyReport(max_problems=max_problems)
    trusted = trusted_public_keys()
    expected_number: int | None = 1 if since is None else None
    expected_prev: str | None = "0" * 64 if since is None else None
    expected_first: int | None = 1 if since is None else None
    last_number = 0
    last_seq = 0
    after_block = 0
    if since is not None:
        report.mode = SINCE
    elif full:
        report.fallback = "asked for"
    else:
        anchor, why = verified_anchor_get()
        if anchor is not None:
            usable, problem = _anchor_link(anchor)
            if problem:
                report.add(VerifyProblem(CHAIN, anchor.block, None, None, problem))
                why = f"the block verified last ({anchor.block}) changed"
            elif not usable:
                why = f"the block verified last ({anchor.block}) is no longer in the trail"
            else:
                report.mode, report.from_block, report.anchor_seq = INCREMENTAL, anchor.block + 1, anchor.event_seq
                after_block = last_number = anchor.block
                expected_number, expected_prev = anchor.block + 1, anchor.block_hash
                last_seq = anchor.last_seq
                expected_first = anchor.last_seq + 1
        report.fallback = "" if report.mode == INCREMENTAL else why
    for item in _chain_items(since, after_block):
        if isinstance(item, PurgeTombstone):
            if since is not None and expected_number is None:
                continue  # tombstones before the first selected block
            if expected_number is not None and item.first_block != expected_number:
                _missing_blocks(report, expected_number, item.first_block - 1)
            elif expected_prev is not None and item.prev_block_hash != expected_prev:
                report.add(
                    VerifyProblem(
                        CHAIN,
                        item.first_block,
                        None,
                        None,
                        f"purge tombstone for blocks {item.first_block}-{item.last_block} does not chain to the "
                        "block before it",
                    )
                )
            if _verify_tombstone(item, trusted, report):
                report.purged.append(
                    PurgedRange(
                        item.first_block,
                        item.last_block,
                        item.first_seq,
                        item.last_seq,
                        item.event_count,
                        item.header()["purged_at"],
                    )
                )
            intruders = AuditEvent.objects.filter(seq__gte=item.first_seq, seq__lte=item.last_seq)
            for seq, event_uuid in intruders.order_by("seq").values_list("seq", "event_id")[:max_problems]:
                report.add(
                    VerifyProblem(
                        INSERTED,
                        item.first_block,
                        seq,
                        str(event_uuid),
                        f"purged blocks {item.first_block}-{item.last_block}: inserted event "
                        f"{_event_label(seq, str(event_uuid))} inside a purged range",
                    )
                )
            expected_number, expected_prev = item.last_block + 1, item.last_block_hash
            expected_first = item.last_seq + 1
            last_number, last_seq = item.last_block, item.last_seq
            continue
        block = item
        if expected_number is None:
            link = _previous_link(block.number)
            if link is not None or block.number == 1:
                expected_prev, expected_first = link if link is not None else ("0" * 64, 1)
            expected_number = block.number
        if block.number != expected_number:
            _missing_blocks(report, expected_number, block.number - 1)
            expected_prev = None
            expected_first = None
        checker = _BlockChecker(block, report)
        if checker.check_structure(trusted, expected_prev, expected_first):
            checker.check_events()
        report.blocks_verified += 1
        report.gap_seqs += (block.last_seq - block.first_seq + 1) - block.count
        expected_number, expected_prev, expected_first = block.number + 1, block.block_hash, block.last_seq + 1
        last_number, last_seq = block.number, block.last_seq
    state = SealState.objects.filter(pk=1).first()
    if state is not None and state.head_number > last_number and (since is None or last_number):
        _missing_blocks(report, last_number + 1, state.head_number)
        last_seq = max(last_seq, state.head_last_seq)
    report.head_block = max(last_number, state.head_number if state else 0)
    report.unsealed_events = AuditEvent.objects.filter(seq__gt=last_seq).count()
    if checkpoints:
        _compare_with_checkpoints(report, from_block=after_block)
    if report.ok and since is None and last_number and expected_prev is not None:
        # An unbroken chain from genesis (or a trusted anchor) up to here: the next run may start after it.
        report.verified_through = {"block": last_number, "block_hash": expected_prev, "last_seq": last_seq}
    return report


def _compare_with_checkpoints(report: VerifyReport, *, from_block: int = 0) -> None:
    """Add one problem per disagreement with the checkpoint log (blocks ``from_block`` on), in block order."""
    from audit.services.checkpoints import checkpoints_verify

    outcome = checkpoints_verify(from_block=from_block)
    report.checkpoints_checked = outcome.checkpoints
    report.chain_restarts = outcome.restarts
    for finding in outcome.findings:
        report.add(VerifyProblem(CHECKPOINT, finding.block, None, None, f"checkpoint log: {finding.message}"))


def _missing_blocks(report: VerifyReport, first: int, last: int) -> None:
    report.add(
        VerifyProblem(
            MISSING_BLOCK,
            first,
            None,
            None,
            f"sealed block{'s' if last > first else ''} {first}{f'-{last}' if last > first else ''} "
            "missing (deleted, and no purge tombstone covers it)",
        )
    )
