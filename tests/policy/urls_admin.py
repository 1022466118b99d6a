"""A URLconf with only Django admin, so the policy admin tests do not depend on other apps' routes."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
