"""Generation now belongs to core (core 0001): forget it here without touching the table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_batchjob"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Generation")],
            database_operations=[],
        ),
    ]
