"""Writes of the tenants app (a package: keys, tenants and plans, quotas, usage rollups).

Import from here; the submodules are an implementation detail.
"""

from tenants.quota.types import QuotaPolicy
from tenants.services.keys import (
    IssuedApiKey,
    api_key_authenticate,
    api_key_authenticate_request,
    api_key_cache_clear,
    api_key_create,
    api_key_from_headers,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    principal_require_scope,
)
from tenants.services.quotas import Reservation, quota_refund, quota_refund_state, quota_reserve, quota_state_of
from tenants.services.tenants import (
    DemoTenant,
    demo_tenant_ensure,
    plan_delete,
    plan_save,
    plan_standard_ensure,
    tenant_create,
    tenant_quota_set,
    tenant_save,
    tenant_suspend,
    tenant_unsuspend,
    tenant_validate,
)
from tenants.services.usage_rollups import RollupAdvance, usage_rollups_advance

__all__ = [
    "DemoTenant",
    "IssuedApiKey",
    "QuotaPolicy",
    "Reservation",
    "RollupAdvance",
    "api_key_authenticate",
    "api_key_authenticate_request",
    "api_key_cache_clear",
    "api_key_create",
    "api_key_from_headers",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_update",
    "demo_tenant_ensure",
    "plan_delete",
    "plan_save",
    "plan_standard_ensure",
    "principal_require_scope",
    "quota_refund",
    "quota_refund_state",
    "quota_reserve",
    "quota_state_of",
    "tenant_create",
    "tenant_quota_set",
    "tenant_save",
    "tenant_suspend",
    "tenant_unsuspend",
    "tenant_validate",
    "usage_rollups_advance",
]
