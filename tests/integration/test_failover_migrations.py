"""The failover app's data migrations, run on rows an older version wrote."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_restoration_files_from_before_sources_are_on_their_events_failover_server(team):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from failover.models import RestorationFile

    before = [("failover", "0005_lease_expires_at"), ("inventory", "0008_remove_camera_capacity")]
    after = [("failover", "0006_cascade_and_sources")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    server = apps.get_model("inventory", "Server").objects
    lobby = server.create(team_id=team.pk, role="recording", name="Lobby", host="h")
    standby = server.create(team_id=team.pk, role="failover", name="Standby", host="h")
    event = apps.get_model("failover", "FailoverEvent").objects.create(
        team_id=team.pk, recording_server_id=lobby.pk, recording_server_name="Lobby",
        failover_server_id=standby.pk, node_tag=f"rs{lobby.pk}", trigger="disconnected",
        state="restoring",
    )  # fmt: skip
    job = apps.get_model("failover", "RestorationJob").objects.create(
        event_id=event.pk, target_server_id=lobby.pk
    )
    apps.get_model("failover", "RestorationFile").objects.create(
        job_id=job.pk, path=f"failover/rs{lobby.pk}/c1/a.ts", size=3, sha256="0" * 64
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert list(RestorationFile.objects.values_list("source_id", flat=True)) == [standby.pk]


def test_the_one_settings_row_becomes_the_defaults_every_existing_team_follows(team):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from failover.models import FailoverSettings

    before = [
        ("failover", "0007_restoration_file_times"),
        ("inventory", "0009_server_pairing_identity"),
    ]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    apps.get_model("failover", "FailoverSettings").objects.update_or_create(
        pk=1, defaults={"probe_interval": 11, "failures_before_failover": 7}
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    [row] = FailoverSettings.objects.all()
    assert row.team is None and row == FailoverSettings.load()
    governing = FailoverSettings.for_team(team.pk)
    assert (governing.probe_interval, governing.failures_before_failover) == (11, 7)
    # A team's first own row gets an id of its own (PostgreSQL's sequence moved past 1).
    own = FailoverSettings.own_or_copy(team)
    own.save()
    assert FailoverSettings.objects.count() == 2 and own.pk != FailoverSettings.DEFAULTS_PK
