"""Windows of live statistics and the monitors' verdicts, per model version.

``LiveWindow``: one row per model version and window start, the sum of every
process's counts for that window (merged by ``services.live_stats`` under a
row lock, so concurrent flushes never lose a count).  Counts only: feature
bins, predicted labels or value bins, confidence tenths, review flags and
request outcomes, never an input, a tenant or a key.

``MonitorResult``: what the monitors measured on one window and which
``monitoring`` rules it breached, with the policy versions in force; written
once per window (the unique window makes the evaluation idempotent).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from inference.models import ModelVersion


class LiveWindow(models.Model):
    """The counts of one model version during one window (all processes together)."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="live_windows")
    window_start = models.DateTimeField()
    window_seconds = models.PositiveIntegerField()
    requests = models.BigIntegerField(default=0, help_text="Governed requests that reached this model version.")
    instances = models.BigIntegerField(default=0, help_text="Instances predicted.")
    client_errors = models.BigIntegerField(default=0, help_text="4xx answers other than policy denials.")
    denials = models.BigIntegerField(default=0, help_text="Requests denied by policy.")
    server_errors = models.BigIntegerField(default=0, help_text="5xx answers.")
    review_flags = models.BigIntegerField(default=0, help_text="Instances flagged for human review.")
    nonfinite = models.BigIntegerField(default=0, help_text="Non-finite feature values seen (never binned).")
    profile_digest = models.CharField(max_length=32, blank=True, default="", help_text="Bins the counts use.")
    feature_slots = models.PositiveIntegerField(default=0, help_text="Slots per feature in feature_counts.")
    feature_counts = models.JSONField(default=list, blank=True)
    prediction_counts = models.JSONField(default=list, blank=True)
    confidence_counts = models.JSONField(default=list, blank=True)
    flushes = models.PositiveIntegerField(default=0, help_text="Process flushes merged into this row.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_start"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "window_start"], name="live_window_unique"),
        ]
        indexes = [models.Index(fields=["window_start"], name="live_window_start")]

    def __str__(self) -> str:
        return f"{self.model_version.ref} @ {self.window_start:%Y-%m-%d %H:%M}"


class MonitorResult(models.Model):
    """The monitors' verdict on one window of one model version."""

    class Status(models.TextChoices):
        OK = "ok", "Within thresholds"
        BREACH = "breach", "Threshold breached"
        INSUFFICIENT = "insufficient", "Too few instances to judge"
        UNWATCHED = "unwatched", "No monitoring rule applies"

    window = models.OneToOneField(LiveWindow, on_delete=models.PROTECT, related_name="result")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="monitor_results")
    window_start = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices)
    has_reference = models.BooleanField(help_text="False: no reference profile, drift not measured.")
    instances = models.BigIntegerField(default=0)
    measures = models.JSONField(default=dict, help_text="Every measure computed (None when not measurable).")
    breaches = models.JSONField(default=list, help_text="Rule, measure, value, threshold, mode, action per breach.")
    actions = models.JSONField(default=list, help_text="Actions taken (enforce mode only).")
    policy_versions = models.CharField(max_length=500, blank=True, default="")
    evaluated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_start"]
        indexes = [models.Index(fields=["model_version", "window_start"], name="monitor_result_version_time")]

    def __str__(self) -> str:
        return f"{self.model_version.ref} @ {self.window_start:%Y-%m-%d %H:%M}: {self.status}"


class Alert(models.Model):
    """A breach of an enforce ``monitoring`` rule on a model version, open until an operator closes it.

    One open alert per version and rule: later windows that breach the same
    rule attach to it (``windows``, ``last_result``) instead of opening more,
    so a lasting drift is one alert with a history, not one per window.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="alerts")
    rule_id = models.CharField(max_length=200, help_text="<policy>/<rule id> of the monitoring rule breached.")
    policy_version = models.CharField(max_length=200, help_text="name@version of the policy in force at the breach.")
    measures = models.JSONField(default=list, help_text="The measures that breached, with value and threshold.")
    first_result = models.ForeignKey(MonitorResult, on_delete=models.PROTECT, related_name="alerts_opened")
    last_result = models.ForeignKey(MonitorResult, on_delete=models.PROTECT, related_name="+")
    windows = models.PositiveIntegerField(default=1, help_text="Windows that breached this rule while open.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=200, blank=True, default="")
    close_note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # A concurrent evaluation of two windows cannot open the same alert twice.
            models.UniqueConstraint(
                fields=["model_version", "rule_id"], condition=models.Q(status="open"), name="alert_one_open_per_rule"
            ),
            models.CheckConstraint(
                condition=models.Q(status="open") | (~models.Q(close_note="") & models.Q(closed_at__isnull=False)),
                name="alert_closed_has_note",
            ),
        ]

    def __str__(self) -> str:
        return f"alert #{self.pk} {self.model_version.ref} {self.rule_id} ({self.status})"


class Incident(models.Model):
    """A serious incident on a model version, with its statutory reporting clock (EU AI Act Art. 73).

    ``category`` picks the deadline from ``settings.INCIDENT_DEADLINE_DAYS``
    (copied to ``deadline_days`` at opening, so a later change of the table
    does not move a running clock).  While ``open`` or ``reported`` the
    model's evidence is frozen: no version of the model may be activated,
    rolled back or retired (``monitoring.services.incidents``).
    """

    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        REPORTED = "reported", "Reported to the authority"
        RELEASED = "released", "Evidence released"
        CLOSED = "closed", "Closed"

    FREEZING = (Status.OPEN, Status.REPORTED)

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="incidents")
    model_name = models.CharField(max_length=100, db_index=True, help_text="The frozen model (every version).")
    alert = models.OneToOneField(
        Alert, null=True, blank=True, on_delete=models.PROTECT, related_name="incident", help_text="Escalated alert."
    )
    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    category = models.CharField(max_length=64, help_text="Statutory category (key of INCIDENT_DEADLINE_DAYS).")
    deadline_days = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(default=timezone.now)
    opened_by = models.CharField(max_length=200)
    deadline = models.DateTimeField()
    window_start = models.DateTimeField(help_text="Start of the period whose requests the incident concerns.")
    snapshot = models.JSONField(default=dict, help_text="Signed state at opening (model, policies, audit head).")
    snapshot_signature = models.CharField(max_length=200)
    reported_at = models.DateTimeField(null=True, blank=True)
    authority_reference = models.CharField(max_length=200, blank=True, default="")
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True, default="")
    closed_at = models.DateTimeField(null=True, blank=True)
    root_cause = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["status", "deadline"], name="incident_status_deadline")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="released") | ~models.Q(release_reason=""), name="incident_release_reason"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="closed") | ~models.Q(root_cause=""), name="incident_closed_root_cause"
            ),
            models.CheckConstraint(
                condition=models.Q(reported_at__isnull=True) | ~models.Q(authority_reference=""),
                name="incident_reported_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"incident #{self.pk} {self.model_version.ref} ({self.status})"

    def is_overdue(self, now: Any = None) -> bool:
        """Deadline passed and not reported (a closed incident is never overdue)."""
        now = now or timezone.now()
        return self.reported_at is None and self.status != self.Status.CLOSED and self.deadline <= now


class IncidentNote(models.Model):
    """One entry of an incident's timeline: an operator's note or an action taken (all audited too)."""

    class Kind(models.TextChoices):
        NOTE = "note", "Note"
        ACTION = "action", "Action"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="notes")
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.NOTE)
    action = models.CharField(max_length=64, blank=True, default="")
    text = models.TextField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor}: {self.action or self.kind}"


class RegulatorBundle(models.Model):
    """One archive per incident request for the authority, built on a Celery worker."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="bundles")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    file_path = models.CharField(max_length=500, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    size = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"bundle #{self.pk} of incident #{self.incident_id} ({self.status})"


class WebhookEndpoint(models.Model):
    """A receiver of signed notifications, configured by an operator in the admin.

    ``tenant_slug`` empty: the operator's own endpoint, sent every event of
    the kinds it subscribes to; set: a tenant's endpoint, sent only that
    tenant's ``quota.threshold`` events (alerts, incidents and kill switches
    are the operator's business, never a tenant's).
    """

    class Kind(models.TextChoices):
        QUOTA_THRESHOLD = "quota.threshold", "Quota threshold (80 % / 100 %)"
        ALERT_OPENED = "alert.opened", "Alert opened"
        ALERT_CLOSED = "alert.closed", "Alert closed"
        INCIDENT_OPENED = "incident.opened", "Incident opened"
        INCIDENT_REPORTED = "incident.reported", "Incident reported to the authority"
        INCIDENT_RELEASED = "incident.released", "Incident evidence released"
        INCIDENT_CLOSED = "incident.closed", "Incident closed"
        KILL_SWITCH_ENGAGED = "kill_switch.engaged", "Kill switch engaged"
        KILL_SWITCH_LIFTED = "kill_switch.lifted", "Kill switch lifted"

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="HMAC-SHA256 key the receiver checks signatures with.")
    tenant_slug = models.CharField(max_length=64, blank=True, default="", help_text="Empty: every tenant's events.")
    kinds = models.JSONField(default=list, help_text='Event kinds, e.g. ["quota.threshold"].')
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


class WebhookEvent(models.Model):
    """One notification to send; ``dedupe_key`` makes each occurrence exactly one event."""

    kind = models.CharField(max_length=64)
    tenant_slug = models.CharField(max_length=64, blank=True, default="")
    dedupe_key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.dedupe_key}"


class WebhookDelivery(models.Model):
    """The delivery log of one event to one endpoint: attempts, last answer, and dead-lettering."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a pending delivery is due; the recovery beat task re-enqueues those past it (broker outage).
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_unique")]

    def __str__(self) -> str:
        return f"delivery #{self.pk} of {self.event.kind} to {self.endpoint.name} ({self.status})"
