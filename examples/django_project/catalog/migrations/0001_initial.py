from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: tuple[tuple[str, str], ...] = ()

    operations = (
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200)),
                ("indexed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"permissions": [("run_reindex", "Can run the search reindex")]},
        ),
    )
