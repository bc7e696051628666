"""Failed admin logins lock out a username from an IP (django-axes); the API throttles callers (429)."""

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from tests.factories import UserFactory

LOW_RATES = {"anon": "3/minute", "user": "4/minute", "webhook": "5/minute"}


@pytest.fixture
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


def _login(client, username, password, ip="198.51.100.7"):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


@pytest.mark.django_db
@override_settings(AXES_FAILURE_LIMIT=3)
def test_failed_admin_logins_lock_out_that_username_from_that_ip(client):
    for name in ("gus", "fiona"):
        user = UserFactory(username=name, is_staff=True)
        user.set_password("right-password")
        user.save()

    # given three wrong passwords for gus from one IP (the third reaches the limit)
    answers = [_login(client, "gus", "wrong").status_code for _ in range(3)]
    assert answers == [200, 200, 429]  # the form again with its error, then the lockout

    # then even the right password is refused there, with a lockout answer
    locked = _login(client, "gus", "right-password")
    assert locked.status_code == 429
    # and the lockout is for that username and IP only
    assert _login(client, "gus", "right-password", ip="203.0.113.9").status_code == 302
    assert _login(client, "fiona", "right-password").status_code == 302


@pytest.mark.django_db
def test_a_good_login_is_not_locked_out(client):
    user = UserFactory(username="hana", is_staff=True)
    user.set_password("right-password")
    user.save()

    assert _login(client, "hana", "wrong").status_code == 200
    assert _login(client, "hana", "right-password").status_code == 302


@pytest.mark.django_db
@override_settings(API_THROTTLE_RATES=LOW_RATES)
def test_an_authenticated_caller_over_its_rate_gets_a_429_problem_with_retry_after(tenant_a, tenant_b, fresh_counts):
    answers = [tenant_a.client.get("/api/v1/customers").status_code for _ in range(5)]

    assert answers == [200, 200, 200, 200, 429]
    throttled = tenant_a.client.get("/api/v1/customers")
    assert throttled["Content-Type"].startswith("application/problem+json")
    assert throttled.json()["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    # another caller has its own count
    assert tenant_b.client.get("/api/v1/customers").status_code == 200


@pytest.mark.django_db
@override_settings(API_THROTTLE_RATES=LOW_RATES)
def test_anonymous_callers_are_throttled_per_ip(fresh_counts):
    anonymous = APIClient()

    answers = [anonymous.get("/api/v1/customers", REMOTE_ADDR="198.51.100.7").status_code for _ in range(4)]

    assert answers == [401, 401, 401, 429]
    over = anonymous.get("/api/v1/customers", REMOTE_ADDR="198.51.100.7")
    assert over.json()["code"] == "throttled" and int(over["Retry-After"]) > 0
    # another address has its own count
    assert anonymous.get("/api/v1/customers", REMOTE_ADDR="203.0.113.9").status_code == 401


@pytest.mark.django_db
def test_the_suite_rates_are_not_reached_by_a_busy_test(tenant_a, fresh_counts):
    assert all(tenant_a.client.get("/api/v1/customers").status_code == 200 for _ in range(50))
