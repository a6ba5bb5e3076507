"""Schemathesis against the project's own OpenAPI schema: no 5xx, responses as documented.

Operations that reach out to node agents (test connection, LAN search, batch add,
license install, failover actions) are left out: fuzzed addresses must never leave
this machine. They have their own tests against real agents.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# No 5xx, and every response documented: its status, content type and body. (Django
# filter backends ignore an empty filter value on purpose, so negative-data checks,
# which expect a 400 for it, are not asked for.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NETWORK = r"(test-connection|search|batch-add|install|uninstall|manual-failover|fail-back|" \
    r"replace|stop-restoration|lock|unlock|auth/)"  # fmt: skip


def _load_schema() -> schemathesis.BaseSchema:
    from cms.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application).exclude(path_regex=NETWORK)


schema = _load_schema()


@pytest.fixture(autouse=True)
def keep_the_test_connection(db):
    """As Django's test client does: a request must not close the test's connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, django_user_model, team):
    from knox.models import AuthToken

    user = django_user_model.objects.create_superuser("fuzz", "f@example.com", "pw-fuzz-123")
    return AuthToken.objects.create(user)[1]


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_schema(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
