"""BatchJob now belongs to the jobs app (jobs 0001): forget it here without touching the table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0003_generation_moved_to_core"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="BatchJob")],
            database_operations=[],
        ),
    ]
