"""Node passwords: encrypted at rest, rotatable, never shown."""

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.db import connection

from cms.inventory import secrets
from cms.inventory.models import Server
from cms.inventory.secrets import Secret


def raw_password_column(pk: int) -> str:
    table = Server._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"SELECT admin_password FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cur.fetchone()[0]


def test_it_round_trips(make_server):
    server = make_server(admin_password="s3cret-Pass")
    loaded = Server.objects.get(pk=server.pk)
    assert isinstance(loaded.admin_password, Secret)
    assert loaded.admin_password.reveal() == "s3cret-Pass"


def test_the_database_holds_no_plaintext(make_server):
    server = make_server(admin_password="s3cret-Pass")
    raw = raw_password_column(server.pk)
    assert "s3cret" not in raw
    assert raw.startswith("gAAAA")  # a Fernet token
    assert secrets.decrypt(raw) == "s3cret-Pass"
    with pytest.raises(InvalidToken):  # only the configured keys decrypt it
        Fernet(Fernet.generate_key()).decrypt(raw.encode())


def test_it_never_shows_in_repr_str_or_format(make_server):
    server = Server.objects.get(pk=make_server(admin_password="s3cret-Pass").pk)
    for text in (
        repr(server),
        str(server),
        repr(server.admin_password),
        str(server.admin_password),
        f"{server.admin_password}",
        repr(vars(server)),
    ):
        assert "s3cret" not in text


def test_saving_again_does_not_reencrypt_or_change_the_secret(make_server):
    server = make_server(admin_password="s3cret-Pass")
    before = raw_password_column(server.pk)
    loaded = Server.objects.get(pk=server.pk)
    loaded.port = 5001
    loaded.save()
    assert raw_password_column(server.pk) == before


def test_rotation_reencrypts_with_a_new_key(make_server, settings):
    old_key = Fernet.generate_key().decode()
    settings.CMS_SECRET_KEYS = [old_key]
    server = make_server(admin_password="s3cret-Pass")
    old_token = raw_password_column(server.pk)

    new_key = Fernet.generate_key().decode()
    settings.CMS_SECRET_KEYS = [new_key, old_key]
    call_command("rotate_secrets")
    new_token = raw_password_column(server.pk)
    assert new_token != old_token

    settings.CMS_SECRET_KEYS = [new_key]  # the old key is gone
    assert Server.objects.get(pk=server.pk).admin_password.reveal() == "s3cret-Pass"
    with pytest.raises(Exception, match="cannot be decrypted"):
        secrets.decrypt(old_token)


def test_a_bad_key_is_a_clear_configuration_error(settings):
    settings.CMS_SECRET_KEYS = ["not-a-key"]
    with pytest.raises(Exception, match="Fernet keys"):
        secrets.encrypt("x")


def test_the_admin_page_does_not_show_the_password(admin_client, make_server):
    server = make_server(role="failover", admin_password="s3cret-Pass")
    html = admin_client.get(f"/admin/inventory/failoverserver/{server.pk}/change/").content.decode()
    assert "s3cret" not in html
    assert raw_password_column(server.pk) not in html
