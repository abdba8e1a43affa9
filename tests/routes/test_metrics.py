"""GET /metrics: Prometheus text with request counts by route template, security events and outbox depth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from keel.core.audit import SecurityEvent
from keel.core.client_ip import parse_networks
from keel.core.config import ConfigError, Settings, load_settings
from keel.http.metrics import HTTP_BUCKETS, MULTIPROC_ENV, Metrics, reset_multiprocess_dir
from keel.main import create_app
from keel.models import EmailKind, EmailOutbox, OutboxStatus, Role, utcnow
from tests.conftest import base_settings
from tests.factories import assert_problem, create_user, login, signed_in

AUTH = "/api/v1/auth"
TODOS = "/api/v1/todos"
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]

    def requests(self, method: str, route: str, status: int) -> float:
        return self.value("keel_http_requests_total", method=method, route=route, status=str(status)) or 0.0

    def auth(self, event: str) -> float | None:
        return self.value("keel_auth_events_total", event=event)


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


class TestExposition:
    async def test_is_prometheus_text_with_every_keel_metric(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = {family.name: family.type for family in text_string_to_metric_families(response.text)}
        assert families["keel_http_requests"] == "counter"
        assert families["keel_http_request_duration_seconds"] == "histogram"
        assert families["keel_auth_events"] == "counter"
        assert families["keel_outbox_depth"] == "gauge"
        # Nothing from the process-wide default registry (python_gc_*, process_*) leaks in.
        assert not [name for name in families if not name.startswith("keel_")]

    async def test_is_documented_as_text_under_operations(self, client: httpx.AsyncClient) -> None:
        operation = (await client.get("/openapi.json")).json()["paths"]["/metrics"]["get"]

        assert operation["tags"] == ["operations"]
        assert "text/plain" in operation["responses"]["200"]["content"]

    async def test_counts_its_own_requests_like_any_other(self, client: httpx.AsyncClient) -> None:
        first = await scrape(client)
        second = await scrape(client)

        assert first.requests("GET", "/metrics", 200) == 0
        assert second.requests("GET", "/metrics", 200) == 1

    async def test_each_app_has_its_own_registry(self, settings: Settings, client: httpx.AsyncClient) -> None:
        await client.get("/health")

        async with running(settings) as (_, other):
            assert (await scrape(other)).requests("GET", "/health", 200) == 0
        assert (await scrape(client)).requests("GET", "/health", 200) == 1


class TestHttpRequests:
    async def test_are_counted_by_route_template_never_by_raw_path(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client)
        ids = [
            (await client.post(f"{TODOS}/", json={"title": title}, headers=tokens.headers)).json()["id"]
            for title in ("one", "two")
        ]
        for todo_id in [*ids, 999_999]:
            await client.get(f"{TODOS}/{todo_id}", headers=tokens.headers)

        metrics = await scrape(client)

        template = f"{TODOS}/{{todo_id}}"
        assert metrics.requests("GET", template, 200) == 2
        assert metrics.requests("GET", template, 404) == 1
        routes = {series["route"] for series in metrics.series("keel_http_requests_total")}
        assert {template, f"{TODOS}/"} <= routes
        assert not routes & {f"{TODOS}/{todo_id}" for todo_id in [*ids, 999_999]}

    async def test_unknown_paths_share_one_label(self, client: httpx.AsyncClient) -> None:
        for n in range(5):
            assert (await client.get(f"/wp-admin/probe-{n}.php")).status_code == 404

        metrics = await scrape(client)

        assert metrics.requests("GET", "<unmatched>", 404) == 5
        assert "probe" not in metrics.text

    async def test_unknown_methods_share_one_label(self, client: httpx.AsyncClient) -> None:
        await client.request("BREW", "/health")
        await client.request("PROPFIND", "/health")

        metrics = await scrape(client)

        assert metrics.requests("other", "/health", 405) == 2
        assert "BREW" not in metrics.text

    async def test_the_docs_and_static_files_are_labelled_by_their_template(self, client: httpx.AsyncClient) -> None:
        await client.get("/docs")
        await client.get("/static/keel.css")
        await client.get("/static/missing.css")

        metrics = await scrape(client)

        assert metrics.requests("GET", "/docs", 200) == 1
        assert metrics.requests("GET", "/static/{path}", 200) == 1
        assert metrics.requests("GET", "/static/{path}", 404) == 1

    async def test_durations_are_a_histogram_with_api_sized_buckets(self, client: httpx.AsyncClient) -> None:
        for _ in range(3):
            await client.get("/health")

        metrics = await scrape(client)

        labels = {"method": "GET", "route": "/health"}
        assert metrics.value("keel_http_request_duration_seconds_count", **labels) == 3
        total = metrics.value("keel_http_request_duration_seconds_sum", **labels)
        assert total is not None
        assert 0 < total < 30
        buckets = {series["le"] for series in metrics.series("keel_http_request_duration_seconds_bucket")}
        assert buckets == {*(str(bound) for bound in HTTP_BUCKETS), "+Inf"}
        assert metrics.value("keel_http_request_duration_seconds_bucket", le="+Inf", **labels) == 3


class TestAuthEvents:
    async def test_every_event_has_a_series_from_the_start(self, client: httpx.AsyncClient) -> None:
        metrics = await scrape(client)

        assert {event.value: metrics.auth(event.value) for event in SecurityEvent} == {
            event.value: 0.0 for event in SecurityEvent
        }

    async def test_sign_in_refresh_reuse_and_logout_are_counted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await client.post(f"{AUTH}/login", data={"username": account.email, "password": "Wrong-password-123"})
        await client.post(f"{AUTH}/login", data={"username": "nobody@example.com", "password": "Wrong-password-123"})
        tokens = await login(client, account)
        refreshed = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})
        assert refreshed.status_code == 200
        assert (await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})).status_code == 401
        assert (await client.post(f"{AUTH}/refresh", json={"refresh_token": "never-issued"})).status_code == 401
        again = await login(client, account)
        assert (await client.post(f"{AUTH}/logout", headers=again.headers)).status_code == 204

        metrics = await scrape(client)

        assert metrics.auth("login_failed") == 2
        assert metrics.auth("login_succeeded") == 2
        assert metrics.auth("token_refreshed") == 1
        assert metrics.auth("refresh_token_reuse") == 1
        assert metrics.auth("refresh_failed") == 1
        assert metrics.auth("logout") == 1

    async def test_admin_changes_are_counted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin = await signed_in(app, client, role=Role.ADMIN)
        member = await create_user(app)
        for change in ({"role": "admin"}, {"role": "user"}, {"is_active": False}, {"is_active": True}):
            response = await client.patch(f"/api/v1/admin/users/{member.id}", json=change, headers=admin.headers)
            assert response.status_code == 200, response.text

        metrics = await scrape(client)

        assert metrics.auth("role_changed") == 2
        assert metrics.auth("user_deactivated") == 1
        assert metrics.auth("user_reactivated") == 1

    async def test_password_change_and_session_ends_are_counted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)
        await login(client, account)  # a second session
        other_id = next(
            row["id"]
            for row in (await client.get(f"{AUTH}/sessions", headers=tokens.headers)).json()
            if not row["current"]
        )
        assert (await client.delete(f"{AUTH}/sessions/{other_id}", headers=tokens.headers)).status_code == 204
        change = {"current_password": account.password, "new_password": "Lilac-tundra-beacon-31"}
        assert (await client.post(f"{AUTH}/password-change", json=change, headers=tokens.headers)).status_code == 204
        assert (await client.post(f"{AUTH}/logout-all", headers=tokens.headers)).status_code == 204

        metrics = await scrape(client)

        assert metrics.auth("session_revoked") == 1
        assert metrics.auth("password_changed") == 1
        assert metrics.auth("logout_all") == 1


async def add_outbox_rows(app: FastAPI, counts: dict[OutboxStatus, int]) -> None:
    later = utcnow() + timedelta(hours=1)  # not due, so the in-process relay leaves them alone
    async with app.state.database.session() as session:
        for status, count in counts.items():
            for n in range(count):
                session.add(
                    EmailOutbox(
                        kind=EmailKind.RESET_NO_ACCOUNT,
                        to_address=f"{status.value}-{n}@example.com",
                        user_id=None,
                        status=status,
                        next_attempt_at=later,
                        claimed_at=utcnow() if status is OutboxStatus.SENDING else None,
                    )
                )
        await session.commit()


class TestOutboxDepth:
    async def test_reflects_the_rows_at_scrape_time(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        before = await scrape(client)
        await add_outbox_rows(
            app,
            {OutboxStatus.PENDING: 2, OutboxStatus.SENDING: 1, OutboxStatus.FAILED: 3, OutboxStatus.SENT: 4},
        )

        after = await scrape(client)

        assert [before.value("keel_outbox_depth", status=s) for s in ("pending", "sending", "failed")] == [0, 0, 0]
        assert [after.value("keel_outbox_depth", status=s) for s in ("pending", "sending", "failed")] == [2, 1, 3]
        assert after.value("keel_outbox_depth", status="sent") is None

    async def test_is_left_out_while_the_database_is_down_and_the_rest_still_served(self, tmp_path: Path) -> None:
        async with running(base_settings(tmp_path, database_url=UNREACHABLE_DATABASE)) as (_, http):
            await http.get("/health")
            response = await http.get("/metrics")

        assert response.status_code == 200
        metrics = Scrape(response.text)
        assert metrics.requests("GET", "/health", 200) == 1
        assert metrics.series("keel_outbox_depth") == []


def file_values(**kwargs: Any) -> Any:
    """The value class prometheus-client picks at import when PROMETHEUS_MULTIPROC_DIR is set."""
    return values.MultiProcessValue(**kwargs)  # type: ignore[no-untyped-call]


class TestMultiprocess:
    @pytest.fixture
    def multiproc_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """What `keel serve --workers N` gets with PROMETHEUS_MULTIPROC_DIR set before prometheus-client loads."""
        directory = tmp_path / "prometheus"
        monkeypatch.setenv(MULTIPROC_ENV, str(directory))
        reset_multiprocess_dir()
        monkeypatch.setattr(values, "ValueClass", file_values())
        return directory

    async def test_a_scrape_sums_every_worker(
        self, multiproc_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Another worker process, as far as the files are concerned: its own pid, its own file.
        this_process = values.ValueClass
        monkeypatch.setattr(values, "ValueClass", file_values(process_identifier=lambda: 4_000_000))
        Metrics().observe_request(method="GET", route="/health", status=200, seconds=0.01)
        monkeypatch.setattr(values, "ValueClass", this_process)

        async with running(settings) as (_, http):
            await http.get("/health")
            metrics = await scrape(http)

        assert metrics.requests("GET", "/health", 200) == 2
        assert metrics.value("keel_http_request_duration_seconds_count", method="GET", route="/health") == 2
        assert metrics.value("keel_outbox_depth", status="pending") == 0
        assert [path async for path in anyio.Path(multiproc_dir).glob("*_4000000.db")]

    def test_keel_serve_starts_from_an_empty_folder(self, multiproc_dir: Path) -> None:
        (multiproc_dir / "counter_123.db").write_bytes(b"stale")
        (multiproc_dir / "keep.txt").write_text("not ours")

        reset_multiprocess_dir()

        assert [path.name for path in multiproc_dir.iterdir()] == ["keep.txt"]


METRICS_TOKEN = "prometheus-scrape-token-0123456789-abcdef"


@asynccontextmanager
async def serving(settings: Settings, client: str, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app on these settings (changed as given), called from the address `client`."""
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=(client, 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


class TestAccess:
    async def test_outside_production_anyone_may_scrape(self, settings: Settings) -> None:
        async with serving(settings, "203.0.113.7") as http:
            response = await http.get("/metrics")

        assert response.status_code == 200

    @pytest.mark.parametrize("client", ["127.0.0.1", "::1", "10.1.2.3", "172.20.0.5", "192.168.1.9", "fd00::7"])
    async def test_in_production_this_host_and_private_networks_may_scrape(
        self, settings: Settings, client: str
    ) -> None:
        async with serving(settings, client, environment="production") as http:
            response = await http.get("/metrics")

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("client", ["203.0.113.7", "2001:db8::1", "::ffff:198.51.100.4"])
    async def test_in_production_anyone_else_gets_403(self, settings: Settings, client: str) -> None:
        async with serving(settings, client, environment="production") as http:
            response = await http.get("/metrics")

        assert_problem(response, 403, "forbidden")
        assert "keel_" not in response.text

    @pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded"])
    async def test_a_request_relayed_by_a_proxy_nobody_trusts_is_not_from_the_proxys_network(
        self, settings: Settings, header: str
    ) -> None:
        # A reverse proxy on this host that KEEL_TRUSTED_PROXIES does not name: the client is unknown.
        async with serving(settings, "127.0.0.1", environment="production") as http:
            response = await http.get("/metrics", headers={header: "for=203.0.113.7"})

        assert_problem(response, 403, "forbidden")

    async def test_behind_a_trusted_proxy_the_forwarded_client_decides(self, settings: Settings) -> None:
        trusted = parse_networks("127.0.0.1")
        async with serving(settings, "127.0.0.1", environment="production", trusted_proxies=trusted) as http:
            outside = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
            inside = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.9"})

        assert_problem(outside, 403, "forbidden")
        assert inside.status_code == 200

    async def test_keel_metrics_allow_replaces_the_default_networks(self, settings: Settings) -> None:
        allowed = parse_networks("198.51.100.0/24")
        async with serving(settings, "198.51.100.9", environment="production", metrics_allow=allowed) as http:
            listed = await http.get("/metrics")
        async with serving(settings, "10.0.0.1", environment="production", metrics_allow=allowed) as http:
            unlisted = await http.get("/metrics")

        assert listed.status_code == 200
        assert_problem(unlisted, 403, "forbidden")

    async def test_with_a_token_any_client_may_scrape_and_others_are_asked_for_it(self, settings: Settings) -> None:
        token = SecretStr(METRICS_TOKEN)
        async with serving(settings, "203.0.113.7", metrics_allow=(), metrics_token=token) as http:
            missing = await http.get("/metrics")
            other_scheme = await http.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})
            wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"})
            longer = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
            right = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

        assert_problem(missing, 401, "not_authenticated")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert_problem(other_scheme, 401, "not_authenticated")
        assert_problem(wrong, 401, "invalid_token")
        assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert_problem(longer, 401, "invalid_token")
        assert right.status_code == 200
        assert Scrape(right.text).value("keel_outbox_depth", status="pending") is not None

    async def test_an_allowed_network_needs_no_token(self, settings: Settings) -> None:
        token = SecretStr(METRICS_TOKEN)
        async with serving(settings, "10.0.0.4", environment="production", metrics_token=token) as http:
            response = await http.get("/metrics")

        assert response.status_code == 200

    async def test_the_denials_are_documented(self, client: httpx.AsyncClient) -> None:
        operation = (await client.get("/openapi.json")).json()["paths"]["/metrics"]["get"]

        assert {"401", "403"} <= set(operation["responses"])
        assert "KEEL_METRICS_TOKEN" in operation["description"]


@pytest.mark.usefixtures("isolated_env")
class TestAccessSettings:
    def test_reads_networks_and_the_token_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KEEL_METRICS_ALLOW", "10.0.0.0/8, 192.168.1.5")
        monkeypatch.setenv("KEEL_METRICS_TOKEN", METRICS_TOKEN)

        settings = load_settings(environment="test", data_dir=tmp_path)

        assert settings.metrics_networks == parse_networks("10.0.0.0/8,192.168.1.5")
        assert settings.metrics_token is not None
        assert settings.metrics_token.get_secret_value() == METRICS_TOKEN

    def test_empty_means_no_network_only_the_token(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEEL_METRICS_ALLOW", "")

        assert load_settings(environment="test", data_dir=tmp_path).metrics_networks == ()

    def test_unset_is_private_networks_in_production_and_anyone_elsewhere(self, tmp_path: Path) -> None:
        assert load_settings(environment="development", data_dir=tmp_path).metrics_networks is None
        assert base_settings(tmp_path).model_copy(update={"environment": "production"}).metrics_networks == (
            parse_networks("127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7")
        )

    @pytest.mark.parametrize(
        ("name", "value", "fragment"),
        [
            ("KEEL_METRICS_ALLOW", "10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("KEEL_METRICS_ALLOW", "prometheus.internal", "is not an IP address"),
            ("KEEL_METRICS_TOKEN", "short-token", "at least 32 bytes"),
        ],
    )
    def test_refuses_what_cannot_be_meant(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
    ) -> None:
        monkeypatch.setenv(name, value)

        with pytest.raises(ConfigError, match=name) as caught:
            load_settings(environment="test", data_dir=tmp_path)

        assert fragment in str(caught.value)
