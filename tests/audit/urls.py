"""URLconf of the audit HTTP tests: the audit routes and the admin only (no other app's routes)."""

from django.contrib import admin
from django.urls import include, path

handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("audit.urls")),
]
