"""The inventory's data migrations, run on rows an older version wrote."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_node_added_twice_before_serials_were_unique_keeps_it_on_the_first_server(team):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from cms.inventory.models import Server

    before = [("inventory", "0009_server_pairing_identity")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    server = executor.loader.project_state(before).apps.get_model("inventory", "Server").objects
    for name in ("Standby 2", "Standby-1", "Standby-2"):  # one node, added three times
        server.create(team_id=team.pk, role="failover", name=name, name_key=name, host="h",
                      serial="SN-1")  # fmt: skip
    server.create(team_id=team.pk, role="recording", name="Lobby", name_key="Lobby", host="h",
                  serial="SN-2")  # fmt: skip
    server.create(team_id=team.pk, role="recording", name="Garage", name_key="Garage", host="h",
                  serial="")  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(Server.objects.values_list("name", "serial")) == {
        "Standby 2": "SN-1", "Standby-1": "", "Standby-2": "", "Lobby": "SN-2", "Garage": "",
    }  # fmt: skip
