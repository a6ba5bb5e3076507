"""Every page carries a Content-Security-Policy that runs the project's scripts only."""

import re

import pytest
from django.test import Client


@pytest.mark.parametrize(
    "path", ["/admin/login/", "/admin/", "/api/docs/", "/admin/inventory/failoverserver/batch/"]
)
def test_it_sends_a_policy_without_inline_scripts(admin_client, path):
    browser = Client() if path == "/admin/login/" else admin_client  # the login page: anonymous
    response = browser.get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    html = response.content.decode()
    # A <script> that is executed has a src from this site; data blocks (JSON) do not run.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or "application/json" in tag, tag
    assert not re.search(r"\son(click|submit|change|load)=", html)
