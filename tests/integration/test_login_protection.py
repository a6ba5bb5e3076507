"""Guessing passwords: the admin's form and the API's login share one count, in the database."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import requests
from django.test import Client, RequestFactory, override_settings
from rest_framework.test import APIClient

from cms.logins import client_address
from tests.fixtures.celery import ROOT, child_env
from tests.fixtures.nodes import wait_until

RIGHT = {"username": "root", "password": "pw-root-123"}
WRONG = {"username": "root", "password": "not-the-password"}


def test_the_api_refuses_the_right_password_after_five_wrong_ones(admin_user):
    client = APIClient()
    answers = [client.post("/api/v1/auth/login/", WRONG).status_code for _ in range(5)]
    assert answers == [401, 401, 401, 401, 429]
    locked = client.post("/api/v1/auth/login/", RIGHT)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "throttled"
    assert int(locked["Retry-After"]) > 0
    assert "token" not in locked.json()


def test_a_forwarded_for_header_does_not_reset_the_count(admin_user):
    client = APIClient()
    for n in range(6):
        client.post("/api/v1/auth/login/", WRONG, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    locked = client.post("/api/v1/auth/login/", RIGHT, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429


def test_a_spray_from_one_address_over_many_accounts_is_stopped(admin_user, django_user_model):
    for n in range(6):
        django_user_model.objects.create_user(f"user{n}", password="pw-long-enough")
    client = APIClient()
    for n in range(6):
        client.post("/api/v1/auth/login/", {"username": f"user{n}", "password": "guess"})
    # The address is locked: even a right password of another account is refused.
    assert client.post("/api/v1/auth/login/", RIGHT).status_code == 429


def test_the_admin_form_refuses_the_right_password_after_five_wrong_ones(admin_user):
    browser = Client()
    for _ in range(5):
        browser.post("/admin/login/", WRONG)
    page = browser.post("/admin/login/", RIGHT)
    assert page.status_code == 429
    assert "Too many failed logins" in page.content.decode()
    assert "_auth_user_id" not in browser.session


def test_a_login_body_that_is_not_an_object_is_a_clear_400(db):
    client = APIClient()
    answer = client.post("/api/v1/auth/login/", ["root", "pw"], format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"


def test_a_new_password_ends_every_token_of_its_user(admin_user):
    client = APIClient()
    token = client.post("/api/v1/auth/login/", RIGHT).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/teams/").status_code == 200
    admin_user.set_password("a-brand-new-password")
    admin_user.save()
    assert client.get("/api/v1/teams/").status_code == 401


@override_settings(CMS_TRUSTED_PROXIES=1)
def test_behind_one_proxy_only_the_address_it_saw_counts():
    request = RequestFactory().post(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.44"
    )
    assert client_address(request) == "192.0.2.44"  # what the client wrote is ignored


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_three_web_processes_share_one_count(transactional_db, admin_user, tmp_path):
    port = _free_port()
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 (closed below)
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cms.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "3"],
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v1/auth/login/"
    try:
        wait_until(lambda: requests.get(url, timeout=1).status_code, timeout=30,
                   message="gunicorn to answer")  # fmt: skip
        # New connections each time, so the attempts spread over the three processes.
        answers = [requests.post(url, json=WRONG, timeout=10).status_code for _ in range(15)]
        right = requests.post(url, json=RIGHT, timeout=10)
    finally:
        web.terminate()
        web.wait(10)
        log.close()
    assert answers.count(401) == 4, answers
    assert set(answers[4:]) == {429}
    assert right.status_code == 429
