"""Structured model cards: the same fields for every version, trained or registered.

EU AI Act Annex IV and Art. 13 ask the provider to state a system's intended
purpose, its limitations, the data it was trained on and how well it performs;
Art. 72 (post-market monitoring) needs a reference to compare live behaviour
with.  A version's card is built from its row: the operator-stated fields in
``ModelVersion.card`` (a JSON object), the per-class metrics recorded at
training (or stated), the risk tier with its rationale, the reference profile
summary, and the older free-text ``model_card`` kept as ``notes``.

A version at risk tier ``high`` cannot be activated (nor an active version
raised to ``high``) while a required field is empty: see :func:`card_missing`.
Pure Python apart from the row it reads; renders JSON and HTML (escaped).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from inference.profile import reference_profile_summary

CARD_FORMAT = "maas-model-card/1"

#: The operator-stated fields (``ModelVersion.card``), in display order, with their titles.
STATED_FIELDS: dict[str, str] = {
    "intended_purpose": "Intended purpose",
    "out_of_scope_uses": "Out-of-scope uses",
    "training_data": "Training data",
    "metrics_per_class": "Metrics per class",
    "limitations": "Limitations",
    "risk_rationale": "Why this risk tier",
}
#: Required before a version may serve at risk tier ``high`` (every stated field).
REQUIRED_FOR_HIGH: tuple[str, ...] = tuple(STATED_FIELDS)
MAX_FIELD_CHARS = 5000


class CardError(ValueError):
    """A card field that cannot be stored (unknown name, wrong type, too long)."""


def card_fields_check(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise operator-stated card fields; :class:`CardError` names the first bad one.

    Text fields are strings; ``metrics_per_class`` is an object of class label
    to an object of metric name to number.
    """
    if not isinstance(fields, Mapping):
        raise CardError("the model card fields must be an object")
    unknown = sorted(str(k) for k in fields if k not in STATED_FIELDS)
    if unknown:
        raise CardError(f"unknown model card field(s) {', '.join(unknown)}; known: {', '.join(STATED_FIELDS)}")
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "metrics_per_class":
            if not isinstance(value, Mapping) or not all(
                isinstance(m, Mapping)
                and all(
                    isinstance(n, str) and isinstance(v, int | float) and not isinstance(v, bool) for n, v in m.items()
                )
                for m in value.values()
            ):
                raise CardError("metrics_per_class must map each class label to {metric name: number}")
            out[key] = {str(label): {str(n): float(v) for n, v in m.items()} for label, m in value.items()}
            continue
        if not isinstance(value, str):
            raise CardError(f"{key} must be text")
        if len(value) > MAX_FIELD_CHARS:
            raise CardError(f"{key} is longer than {MAX_FIELD_CHARS} characters")
        out[key] = value.strip()
    return out


def _metrics_per_class(version: Any) -> dict[str, dict[str, float]]:
    stated = (version.card or {}).get("metrics_per_class")
    if stated:
        return stated
    recall = (version.metrics or {}).get("per_class_recall") or {}
    return {str(label): {"recall": float(value)} for label, value in recall.items()}


def card_build(version: Any) -> dict[str, Any]:
    """The structured card of a ``ModelVersion`` row (every field present; empty when unknown)."""
    stated = dict(version.card or {})
    card: dict[str, Any] = {"format": CARD_FORMAT, "model": version.name, "version": version.version}
    for key in STATED_FIELDS:
        card[key] = _metrics_per_class(version) if key == "metrics_per_class" else stated.get(key, "")
    card.update(
        risk_tier=version.risk_tier,
        region=version.region,
        sha256=version.sha256,
        status=version.status,
        accuracy=version.accuracy,
        lineage=version.lineage or {},
        reference_profile=reference_profile_summary(version.reference_profile),
        notes=version.model_card or "",
    )
    return card


def card_missing(version: Any) -> list[str]:
    """The required fields still empty for this version's risk tier (none below ``high``)."""
    if version.risk_tier != "high":
        return []
    card = card_build(version)
    return [key for key in REQUIRED_FOR_HIGH if not card.get(key)]


def card_json(version: Any) -> str:
    """The card as indented JSON (export format)."""
    return json.dumps(card_build(version), indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"


def _html_value(value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "<p><em>not stated</em></p>"
    if isinstance(value, Mapping):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_html_value(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value)))
    return "".join(f"<p>{html.escape(line)}</p>" for line in str(value).splitlines() if line.strip()) or html.escape(
        str(value)
    )


def card_html(version: Any) -> str:
    """The card as a self-contained, escaped HTML page (export and admin download)."""
    card = card_build(version)
    title = f"Model card: {card['model']} v{card['version']}"
    sections = [
        ("Intended purpose", card["intended_purpose"]),
        ("Out-of-scope uses", card["out_of_scope_uses"]),
        ("Training data", card["training_data"]),
        ("Metrics per class", card["metrics_per_class"]),
        ("Limitations", card["limitations"]),
        ("Risk tier", f"{card['risk_tier']}: {card['risk_rationale'] or 'no rationale stated'}"),
        (
            "Reference profile",
            card["reference_profile"] if card["reference_profile"] else "no reference profile",
        ),
        ("Identity", {"sha256": card["sha256"], "status": card["status"], "region": card["region"]}),
        ("Lineage", card["lineage"]),
        ("Notes", card["notes"]),
    ]
    body = "".join(f"<h2>{html.escape(name)}</h2>{_html_value(value)}" for name, value in sections)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}th{text-align:left;padding-right:1em}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
