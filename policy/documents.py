"""Policies as text: the canonical form that versions diff, export and import.

Pure Python (PyYAML, no Django).  A policy's *versioned spec* is what a
version snapshots: its rules, enabled flag and effective window.  Diffs are
unified diffs of the spec rendered as YAML, so a reviewer reads them like a
code review, and the export file is the same YAML (or JSON) that
``import_policies`` reads back, so policies can live in version control.

Export format::

    format: maas-policies/1
    policies:
    - name: baseline
      scope: global            # global | tenant | model
      tenant_slug: ""          # tenant scope only
      model_name: ""           # model scope only
      enabled: true
      effective_from: null     # ISO 8601 with offset, or null
      effective_until: null
      version: 3               # informational; ignored on import
      rules: [...]
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from policy.evaluator import SCOPES
from policy.rules import RuleError, key_list, scope_rules_check, validate_document

FORMAT = "maas-policies/1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9:._-]{0,63}$")
ENTRY_KEYS = frozenset(
    {"name", "scope", "tenant_slug", "model_name", "enabled", "effective_from", "effective_until", "version", "rules"}
)


def iso(value: datetime | None) -> str | None:
    """A datetime as canonical UTC ISO 8601 text (``...Z``), or ``None``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(value: Any, name: str) -> datetime | None:
    """Read an aware datetime from text or a YAML timestamp; naive times are refused."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RuleError(f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise RuleError(f"{name} must be an ISO 8601 date-time, got {value!r}")
    if value.tzinfo is None:
        raise RuleError(f"{name} must include a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return value


def versioned_spec(
    *, rules: list[dict[str, Any]], enabled: bool, effective_from: datetime | None, effective_until: datetime | None
) -> dict[str, Any]:
    """What a version snapshots, in canonical form (JSON-serialisable)."""
    return {
        "enabled": enabled,
        "effective_from": iso(effective_from),
        "effective_until": iso(effective_until),
        "rules": rules,
    }


def dump_yaml(data: Any) -> str:
    """Stable, human-readable YAML (key order kept as built)."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def dump(data: Any, fmt: str) -> str:
    """Render ``data`` as ``yaml`` or ``json``."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return dump_yaml(data)
    raise ValueError(f"unknown format {fmt!r}; use yaml or json")


def load(text: str) -> Any:
    """Parse YAML or JSON (JSON is YAML) with the safe loader."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"the file is neither valid YAML nor JSON: {exc}") from None


def spec_diff(before: dict[str, Any] | None, after: dict[str, Any], *, from_label: str, to_label: str) -> str:
    """Unified diff between two versioned specs (``before=None`` for the first version)."""
    old = dump_yaml(before).splitlines(keepends=True) if before is not None else []
    new = dump_yaml(after).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile=from_label, tofile=to_label))


@dataclass(frozen=True)
class PolicyEntry:
    """One validated policy of an import file."""

    name: str
    scope: str
    tenant_slug: str
    model_name: str
    enabled: bool
    effective_from: datetime | None
    effective_until: datetime | None
    rules: list[dict[str, Any]]

    @property
    def spec(self) -> dict[str, Any]:
        """The versioned spec this entry asks for."""
        return versioned_spec(
            rules=self.rules,
            enabled=self.enabled,
            effective_from=self.effective_from,
            effective_until=self.effective_until,
        )


def parse_entry(raw: Any, index: int) -> PolicyEntry:
    """Validate one entry of an import file exactly as an admin edit would be validated."""
    where = f"policy {index + 1}"
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    name = raw.get("name")
    if isinstance(name, str):
        where = f"policy {name!r}"
    unknown = set(raw) - ENTRY_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {key_list(unknown)}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RuleError(f"{where}: name must be 1-64 lowercase letters, digits, ':', '.', '_' or '-'")
    scope = raw.get("scope", "global")
    if not isinstance(scope, str) or scope not in SCOPES:
        raise RuleError(f"{where}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    tenant_slug = raw.get("tenant_slug") or ""
    model_name = raw.get("model_name") or ""
    if not isinstance(tenant_slug, str) or not isinstance(model_name, str):
        raise RuleError(f"{where}: tenant_slug and model_name must be text")
    check_scope_target(scope=scope, tenant_slug=tenant_slug, model_name=model_name, where=where)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError(f"{where}: enabled must be true or false")
    effective_from = parse_datetime(raw.get("effective_from"), f"{where}: effective_from")
    effective_until = parse_datetime(raw.get("effective_until"), f"{where}: effective_until")
    check_window(effective_from, effective_until, where=where)
    if "rules" not in raw:
        raise RuleError(f"{where}: rules are missing")
    try:
        rules = validate_document(raw["rules"])
        scope_rules_check(scope, rules)
    except RuleError as exc:
        raise RuleError(f"{where}: {exc}") from None
    return PolicyEntry(name, scope, tenant_slug, model_name, enabled, effective_from, effective_until, rules)


def parse_import(data: Any) -> list[PolicyEntry]:
    """Validate a whole export/import document; raise :class:`RuleError` on the first problem."""
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise RuleError("an import file is an object with a 'policies' list (as export_policies writes it)")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise RuleError(f"unsupported format {fmt!r}; expected {FORMAT!r}")
    entries = [parse_entry(raw, index) for index, raw in enumerate(data["policies"])]
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"policy name(s) listed more than once: {', '.join(duplicates)}")
    return entries


def check_scope_target(*, scope: str, tenant_slug: str, model_name: str, where: str = "policy") -> None:
    """A tenant policy names a tenant, a model policy a model, a global policy neither."""
    if scope == "global" and (tenant_slug or model_name):
        raise RuleError(f"{where}: a global policy has no tenant_slug or model_name")
    if scope == "tenant" and (not tenant_slug or model_name):
        raise RuleError(f"{where}: a tenant policy needs tenant_slug (and no model_name)")
    if scope == "model" and (not model_name or tenant_slug):
        raise RuleError(f"{where}: a model policy needs model_name (and no tenant_slug)")


def check_window(effective_from: datetime | None, effective_until: datetime | None, *, where: str = "policy") -> None:
    """The window must not end before it starts."""
    if effective_from and effective_until and effective_until <= effective_from:
        raise RuleError(f"{where}: effective_until must be later than effective_from")
