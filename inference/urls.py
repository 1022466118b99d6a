"""HTTP routes of this app (mounted at the root by gateway.urls)."""

urlpatterns: list = []
