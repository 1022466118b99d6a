"""Joins the two migrations built side by side: model rollouts, and model cards with reference profiles.

Neither touches the other's fields, so the merge has no operations.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0003_model_card_fields_and_reference_profile"),
        ("inference", "0003_model_rollouts"),
    ]

    operations = []
