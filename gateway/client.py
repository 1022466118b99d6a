"""A small typed Python client for the MaaS gateway.

Usage::

    from gateway.client import MaaSClient

    client = MaaSClient("http://127.0.0.1:8000", api_key=open("var/demo-api-key").read().strip())
    print([m["name"] for m in client.list_models()])
    result = client.predict("digits", [[0.0] * 64], purpose="research")
    job = client.submit_job("digits", instances, purpose="research")
    done = client.wait_job(job["id"], progress=True)
    receipt = client.get_receipt(result["request_id"])  # once sealed (None until then)
    assert MaaSClient.verify_receipt(receipt, public_key_pem=open("audit-key.pem").read()).ok

Instances follow the model's signature (``get_model(name)["signature"]``):
lists or numpy arrays of the one input's shape and element type (numpy
integers and booleans stay integers and booleans), objects keyed by input
name, or a mapping of input name to a whole batch (one array per input)::

    client.predict("digit-images", images_uint8)            # [n, 8, 8, 1] integers
    client.predict("multi", {"a": a_batch, "b": b_batch})  # several inputs by name

Errors are raised as :class:`MaaSError` subclasses carrying the problem's
stable ``code``; 429 (rate limits) and 503 answers are retried, honouring
``Retry-After`` up to ``max_retry_wait`` seconds.
"""

from __future__ import annotations

import email.utils
import math
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests


class MaaSError(Exception):
    """An error answer from the gateway (an RFC 9457 problem)."""

    def __init__(self, status: int, code: str, detail: str, request_id: str = "", body: dict | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.body = body or {}


class AuthenticationError(MaaSError):
    """401: missing, invalid, expired or revoked API key."""


class PermissionDeniedError(MaaSError):
    """403: insufficient scope, suspended tenant or a policy denial."""


class PolicyDeniedError(PermissionDeniedError):
    """403 ``policy_denied``: ``body['rule_id']`` names the deciding rule."""


class NotFoundError(MaaSError):
    """404: unknown model, version or job (or another tenant's object)."""


class InvalidRequestError(MaaSError):
    """400/405/413/415: the request itself is wrong."""


class RateLimitedError(MaaSError):
    """429: rate limited or out of quota."""


class UnavailableError(MaaSError):
    """503: a dependency of the gateway is unavailable."""


def _error_class(status: int, code: str) -> type[MaaSError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PolicyDeniedError if code == "policy_denied" else PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return UnavailableError
    return InvalidRequestError


def _jsonable(value: Any) -> Any:
    # numpy arrays and scalars expose tolist()/item(): ints stay ints, bools stay bools.
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def instances_json(instances: Any) -> list[Any]:
    """Instances as the API takes them: a list, one entry per instance.

    A mapping of input name to a whole batch becomes one object per instance
    keyed by input name; anything else (lists, tuples, numpy arrays, objects
    per instance) keeps its element types.
    """
    if isinstance(instances, Mapping):
        columns = {str(name): _jsonable(batch) for name, batch in instances.items()}
        count = len(next(iter(columns.values()), []))
        return [{name: column[i] for name, column in columns.items()} for i in range(count)]
    converted = _jsonable(instances)
    return converted if isinstance(converted, list) else [converted]


class MaaSClient:
    """Client for the REST v1 API of the gateway."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    # -- transport --------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        attempt = 0
        while True:
            response = self.session.request(method, self.base_url + path, **kwargs)
            if response.status_code < 400:
                return response
            retryable = response.status_code in (429, 503)
            wait = _retry_after(response)
            if retryable and attempt < self.max_retries and wait <= self.max_retry_wait:
                attempt += 1
                time.sleep(wait)
                continue
            raise _to_error(response)

    # -- models -----------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        """The models this key may call."""
        return self._request("GET", "/v1/models").json()["models"]

    def get_model(self, name: str) -> dict[str, Any]:
        """Metadata, signature, labels and model card of one model."""
        return self._request("GET", f"/v1/models/{quote(name, safe='')}").json()

    def predict(
        self,
        model: str,
        instances: Any,
        *,
        purpose: str | None = None,
        version: int | None = None,
    ) -> dict[str, Any]:
        """A synchronous prediction; returns the response body.

        Each prediction holds ``label`` and ``probabilities`` (classifiers),
        ``value`` (regression) or ``outputs`` (raw tensors, by output name),
        and ``needs_review``.
        """
        body: dict[str, Any] = {"instances": instances_json(instances)}
        if purpose is not None:
            body["purpose"] = purpose
        if version is not None:
            body["version"] = version
        return self._request("POST", f"/v1/models/{quote(model, safe='')}/predict", json=body).json()

    # -- jobs -------------------------------------------------------------------
    def submit_job(
        self,
        model: str,
        instances: Any,
        *,
        purpose: str | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue an asynchronous batch prediction; resubmitting with the same key returns the same job."""
        body: dict[str, Any] = {"model": model, "instances": instances_json(instances)}
        if purpose is not None:
            body["purpose"] = purpose
        if version is not None:
            body["version"] = version
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return self._request("POST", "/v1/jobs", json=body, headers=headers).json()

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Status, progress and (when done) results of a job."""
        return self._request("GET", f"/v1/jobs/{quote(str(job_id), safe='')}").json()

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        return self._request("DELETE", f"/v1/jobs/{quote(str(job_id), safe='')}").json()

    def wait_job(
        self, job_id: str, *, timeout: float = 600.0, poll: float = 0.5, progress: bool = False
    ) -> dict[str, Any]:
        """Poll until the job finishes; optionally draw a progress bar on stderr."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if progress:
                _draw_progress(job)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                if progress:
                    sys.stderr.write("\n")
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(poll)

    # -- usage ------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """This tenant's consumption against its limits."""
        return self._request("GET", "/v1/usage").json()

    # -- audit receipts -----------------------------------------------------------
    def get_receipt(self, request_id: str) -> dict[str, Any] | None:
        """The audit receipt of one of this tenant's requests; ``None`` while it is not sealed yet (202)."""
        response = self._request("GET", f"/v1/audit/receipts/{quote(request_id, safe='')}")
        return None if response.status_code == 202 else response.json()

    @staticmethod
    def verify_receipt(receipt: dict[str, Any], *, public_key_pem: str | bytes, fingerprint: str | None = None) -> Any:
        """Verify a receipt offline with nothing but the gateway's audit public key (pin it: save it once).

        Returns a ``ReceiptVerification`` (``.ok``, ``.problems``); no request is made.
        """
        from audit.verify_receipt import verify_receipt

        return verify_receipt(receipt, public_key_pem=public_key_pem, fingerprint=fingerprint)


def _retry_after(response: requests.Response) -> float:
    """Seconds to wait before retrying: ``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110).

    One second when the header is absent or unreadable; an HTTP-date in the past means now.
    """
    value = response.headers.get("Retry-After")
    if value is None:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 1.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return 1.0
    return max(0.0, seconds)


def _to_error(response: requests.Response) -> MaaSError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code", "error") if isinstance(body, dict) else "error"
    detail = body.get("detail") or body.get("error") or response.reason if isinstance(body, dict) else response.reason
    request_id = response.headers.get("X-Request-ID", "")
    return _error_class(response.status_code, code)(response.status_code, code, str(detail), request_id, body)


def _draw_progress(job: dict[str, Any]) -> None:
    progress = job.get("progress") or {}
    done, total = progress.get("done", 0), max(progress.get("total", 0), 1)
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {job['status']:<10}")
    sys.stderr.flush()
