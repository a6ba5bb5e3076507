"""Configuration comes from the environment, with defaults that work on a bare machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
from django.db import connection
with connection.cursor() as cur:
    cur.execute("SELECT 1")
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "name": str(db["NAME"]),
                  "broker": settings.CELERY_BROKER_URL, "debug": settings.DEBUG,
                  "vendor": connection.vendor}))
"""

ENV_KEYS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "CMS_HTTPS",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def run_with_env(tmp_path, code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    base.update({"DJANGO_SETTINGS_MODULE": "cms.settings", "CMS_VAR_DIR": str(tmp_path)})
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_defaults_are_sqlite_and_the_embedded_broker_under_var(tmp_path):
    result = run_with_env(tmp_path, PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(tmp_path / "cms.sqlite3")
    assert values["broker"] == f"redis+socket://{tmp_path}/run/redis.sock"
    assert values["debug"] is False


def test_postgresql_through_database_url(tmp_path, postgres_url):
    result = run_with_env(tmp_path, PRINT_SETTINGS, DATABASE_URL=postgres_url)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["vendor"] == "postgresql"


def test_redis_broker_through_redis_url(tmp_path, redis_url):
    code = (
        PRINT_SETTINGS
        + """
from cms.celery import app
with app.connection_for_write() as conn:
    conn.ensure_connection(max_retries=1)
    print(conn.transport_cls)
"""
    )
    result = run_with_env(tmp_path, code, REDIS_URL=redis_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["broker"] == redis_url
    assert result.stdout.splitlines()[1] == "redis"


def test_check_deploy_is_clean_with_production_values(tmp_path):
    result = run_with_env(
        tmp_path,
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'DEBUG'])",
        DEBUG="0",
        SECRET_KEY="k" + Fernet.generate_key().decode() + Fernet.generate_key().decode(),
        CMS_HTTPS="1",
        ALLOWED_HOSTS="cms.example.com",
        CMS_SECRET_KEYS=Fernet.generate_key().decode(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_development_defaults(tmp_path):
    result = run_with_env(
        tmp_path,
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy'])",
        DEBUG="1",
    )
    output = result.stdout + result.stderr
    assert "security.W018" in output  # DEBUG on
    assert "cms.W001" in output  # secrets under the development key


def test_var_is_private_to_its_owner_on_every_start(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    leaked = var / "cms.sqlite3"
    leaked.write_text("")
    leaked.chmod(0o644)  # as an older version left it
    result = run_with_env(tmp_path, PRINT_SETTINGS, CMS_VAR_DIR=str(var))
    assert result.returncode == 0, result.stderr

    assert var.stat().st_mode & 0o777 == 0o700
    assert leaked.stat().st_mode & 0o777 == 0o600
    for made in var.iterdir():  # the keys and whatever else the start created
        assert made.stat().st_mode & 0o077 == 0, made
