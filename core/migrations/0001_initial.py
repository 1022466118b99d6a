"""Generation moves from the gateway app to core: state only, the table ``gateway_generation`` stays."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    # The table was created by gateway 0001; an existing database keeps it and its rows.
    dependencies = [("gateway", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Generation",
                    fields=[
                        ("kind", models.CharField(max_length=32, primary_key=True, serialize=False)),
                        ("value", models.BigIntegerField(default=0)),
                    ],
                    options={"db_table": "gateway_generation"},
                ),
            ],
            database_operations=[],
        ),
    ]
