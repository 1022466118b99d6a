"""Create the ``compliance officer`` group with the audit trail's view and export permissions.

Permissions of other apps (policy versions, usage) are added by
``compliance_group_ensure`` after every migrate, because those models may be
created by migrations that run after this one.
"""

from django.db import migrations

GROUP = "compliance officer"
CODENAMES = [
    "view_auditevent",
    "export_auditevent",
    "view_sealedblock",
    "view_purgetombstone",
    "view_auditexport",
    "view_tenantretention",
    "view_legalhold",
]


def create_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    db = schema_editor.connection.alias
    # Permissions are normally created after all migrations (post_migrate);
    # create this app's now so the group can hold them.
    app_config = apps.get_app_config("audit")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=db)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(db).get_or_create(name=GROUP)
    group.permissions.add(*Permission.objects.using(db).filter(content_type__app_label="audit", codename__in=CODENAMES))


def remove_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_append_only_triggers"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
