"""App config for policy formulation and execution."""

from django.apps import AppConfig


class PolicyConfig(AppConfig):
    """Versioned policy rules and the evaluator that decides every request."""

    name = "policy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Readiness includes policy state: a replica that cannot load it would refuse every request."""
        from core.health import register_readiness_check

        register_readiness_check("policy", _check_policy_state)


def _check_policy_state() -> dict:
    from policy.selectors import policy_set_get

    policy_set = policy_set_get()
    return {
        "policies": policy_set.policy_count,
        "kill_switches": len(policy_set.killed_tenants) + len(policy_set.killed_keys) + len(policy_set.killed_models),
    }
