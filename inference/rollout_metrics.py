"""Per-version figures of a rollout, read from the audit trail, and the automatic-rollback thresholds.

The audit trail is the one source: every request a rollout routed carries
``detail.rollout.id`` and the answering ``model_version``; a shadow run is in
``detail.shadows`` with its agreement with the answer.  So the figures an
operator sees (``rollout_status``, the admin) and the ones the automatic
rollback judges are the ones a compliance officer can recompute from an
export.  A read looks at the newest :data:`FIGURES_MAX_EVENTS` events of the
rollout at most, so a long rollout costs a bounded scan per evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from audit.models import AuditEvent
from inference.models import ModelRollout

#: Newest events of one rollout that a figures read considers.
FIGURES_MAX_EVENTS = 20_000


@dataclass
class VersionFigures:
    """One version's figures within one rollout (``role``: stable, canary or shadow)."""

    version: int
    role: str
    requests: int = 0
    errors: int = 0
    review_flags: int = 0
    latency_total_ms: float = 0.0
    agreement_total: float = 0.0
    agreement_count: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def error_rate(self) -> float | None:
        """Share of requests answered 5xx (a shadow: share of runs that failed)."""
        return round(self.errors / self.requests, 6) if self.requests else None

    @property
    def review_rate(self) -> float | None:
        """Share of answers flagged for human review (answering versions only)."""
        return round(self.review_flags / self.requests, 6) if self.requests and self.role != "shadow" else None

    @property
    def latency_ms(self) -> float | None:
        """Mean latency: the whole request for answering versions, the shadow run for shadows."""
        return round(self.latency_total_ms / self.requests, 3) if self.requests else None

    @property
    def latency_p95_ms(self) -> float | None:
        """95th percentile of the same latencies."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3)

    @property
    def agreement(self) -> float | None:
        """Mean agreement with the stable version (stable itself: ``None``)."""
        return round(self.agreement_total / self.agreement_count, 6) if self.agreement_count else None

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON (``rollout_status --json``, audit records of a rollback)."""
        data = asdict(self)
        data.pop("latencies")
        data.pop("latency_total_ms")
        data.pop("agreement_total")
        data.update(
            error_rate=self.error_rate,
            review_rate=self.review_rate,
            latency_ms=self.latency_ms,
            latency_p95_ms=self.latency_p95_ms,
            agreement=self.agreement,
        )
        return data


def rollout_figures(*, rollout: ModelRollout, max_events: int = FIGURES_MAX_EVENTS) -> dict[int, VersionFigures]:
    """Figures per version of ``rollout``: stable, canary and shadows, from its audited requests."""
    figures: dict[int, VersionFigures] = {rollout.stable_version: VersionFigures(rollout.stable_version, "stable")}
    if rollout.canary_version is not None:
        figures[rollout.canary_version] = VersionFigures(rollout.canary_version, "canary")
    for version in rollout.shadow_versions:
        figures.setdefault(version, VersionFigures(version, "shadow"))
    events = AuditEvent.objects.filter(
        event_type=AuditEvent.Type.REQUEST,
        model_name=rollout.name,
        occurred_at__gte=rollout.created_at,
        detail__rollout__id=rollout.pk,
    )
    rows = events.order_by("-seq").values_list("model_version", "http_status", "latency_ms", "needs_review", "detail")
    for version, status, latency, review, detail in rows[:max_events]:
        arm = (detail or {}).get("rollout", {}).get("arm")
        if version is None or arm == "pinned":
            continue
        own = figures.get(version)
        if own is None:  # a version activated during the rollout answered as stable
            own = figures[version] = VersionFigures(version, "stable")
        own.requests += 1
        own.errors += 1 if status is not None and status >= 500 else 0
        own.review_flags += 1 if review else 0
        if latency is not None:
            own.latency_total_ms += latency
            own.latencies.append(latency)
        for shadow in (detail or {}).get("shadows", ()):
            agreement = shadow.get("agreement")
            if shadow.get("role") == "stable":
                # The canary answered and stable ran unseen: the canary's agreement with stable.
                if agreement is not None:
                    own.agreement_total += agreement
                    own.agreement_count += 1
                continue
            target = figures.setdefault(shadow.get("version"), VersionFigures(shadow.get("version"), "shadow"))
            target.requests += 1
            target.errors += 1 if shadow.get("error") else 0
            target.latency_total_ms += float(shadow.get("latency_ms") or 0.0)
            target.latencies.append(float(shadow.get("latency_ms") or 0.0))
            if agreement is not None:
                target.agreement_total += agreement
                target.agreement_count += 1
    return figures


def rollout_thresholds_crossed(*, rollout: ModelRollout, figures: dict[int, VersionFigures]) -> list[str]:
    """Why ``rollout`` must be rolled back now (empty: it may go on); judged per version once it has enough requests."""
    reasons: list[str] = []
    for figure in figures.values():
        if figure.role == "stable" or figure.requests < rollout.min_requests:
            continue
        label = f"{figure.role} {rollout.name}@{figure.version}"
        n = f"n={figure.requests}"
        if rollout.max_error_rate is not None and (figure.error_rate or 0.0) > rollout.max_error_rate:
            reasons.append(f"{label} error rate {figure.error_rate:.4f} > {rollout.max_error_rate} ({n})")
        if figure.role == "canary":
            if rollout.max_latency_ms is not None and (figure.latency_ms or 0.0) > rollout.max_latency_ms:
                reasons.append(f"{label} mean latency {figure.latency_ms} ms > {rollout.max_latency_ms} ms ({n})")
            if rollout.max_review_rate is not None and (figure.review_rate or 0.0) > rollout.max_review_rate:
                reasons.append(f"{label} review-flag rate {figure.review_rate:.4f} > {rollout.max_review_rate} ({n})")
        if (
            rollout.min_agreement is not None
            and figure.agreement is not None
            and figure.agreement_count >= rollout.min_requests
            and figure.agreement < rollout.min_agreement
        ):
            reasons.append(f"{label} agreement with stable {figure.agreement:.4f} < {rollout.min_agreement} ({n})")
    return reasons
