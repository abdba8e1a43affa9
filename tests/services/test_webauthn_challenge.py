"""WebAuthn challenges are single use, expire in five minutes and serve only what they were issued to."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlmodel import func, select

from keel.core.errors import InvalidCredential, ServiceUnavailable
from keel.core.webauthn import new_challenge
from keel.models import WebauthnChallenge
from keel.services import webauthn_challenge as challenge_service
from keel.services.webauthn_challenge import Binding
from tests.conftest import base_settings
from tests.factories import create_user


async def issue(app: FastAPI, binding: Binding) -> str:
    challenge = new_challenge()
    await challenge_service.issue(
        database=app.state.database, redis=app.state.redis, challenge=challenge, binding=binding
    )
    return challenge


async def consume(app: FastAPI, challenge: str, binding: Binding) -> None:
    await challenge_service.consume(
        database=app.state.database, redis=app.state.redis, challenge=challenge, binding=binding
    )


async def rows(app: FastAPI) -> int:
    async with app.state.database.session() as session:
        return int((await session.exec(select(func.count()).select_from(WebauthnChallenge))).one())


@pytest.fixture
async def user_id(app: FastAPI) -> int:
    return (await create_user(app)).id


class TestSingleUse:
    @pytest.mark.parametrize(
        "kind", ["registration", "second factor", "passkey-first sign-in"], ids=lambda kind: str(kind)
    )
    async def test_a_challenge_serves_once(self, app: FastAPI, user_id: int, kind: str) -> None:
        binding = {
            "registration": Binding.registration(session_id="s" * 32, user_id=user_id),
            "second factor": Binding.second_factor(pending_hash="h" * 64, user_id=user_id),
            "passkey-first sign-in": Binding.sign_in(),
        }[kind]
        challenge = await issue(app, binding)
        await consume(app, challenge, binding)
        with pytest.raises(InvalidCredential):
            await consume(app, challenge, binding)

    async def test_of_concurrent_uses_exactly_one_wins(self, app: FastAPI, user_id: int) -> None:
        binding = Binding.second_factor(pending_hash="h" * 64, user_id=user_id)
        challenge = await issue(app, binding)
        outcomes = await asyncio.gather(*(consume(app, challenge, binding) for _ in range(8)), return_exceptions=True)
        assert sum(outcome is None for outcome in outcomes) == 1
        assert all(isinstance(outcome, InvalidCredential) for outcome in outcomes if outcome is not None)

    @pytest.mark.parametrize("challenge", ["", "A" * 129, "never-issued"])
    async def test_an_unknown_challenge_is_refused(self, app: FastAPI, challenge: str) -> None:
        with pytest.raises(InvalidCredential):
            await consume(app, challenge, Binding.sign_in())


class TestBinding:
    @pytest.mark.parametrize(
        "presented",
        [
            pytest.param(Binding.registration(session_id="t" * 32, user_id=1), id="another session"),
            pytest.param(Binding.second_factor(pending_hash="h" * 64, user_id=1), id="a second factor"),
            pytest.param(Binding.sign_in(), id="a passkey-first sign-in"),
        ],
    )
    async def test_only_what_it_was_issued_to_may_use_it_and_a_wrong_use_spends_it(
        self, app: FastAPI, user_id: int, presented: Binding
    ) -> None:
        issued = Binding.registration(session_id="s" * 32, user_id=user_id)
        if presented.user_id is not None:
            presented = Binding(presented.purpose, presented.session_id, presented.pending_hash, user_id)
        challenge = await issue(app, issued)
        with pytest.raises(InvalidCredential):
            await consume(app, challenge, presented)
        with pytest.raises(InvalidCredential):
            await consume(app, challenge, issued)

    async def test_a_sign_in_challenge_is_no_second_factor_challenge(self, app: FastAPI, user_id: int) -> None:
        challenge = await issue(app, Binding.sign_in())
        with pytest.raises(InvalidCredential):
            await consume(app, challenge, Binding.second_factor(pending_hash="h" * 64, user_id=user_id))


class TestExpiry:
    @pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
    async def test_in_the_database_it_lasts_five_minutes_and_expired_ones_are_pruned(
        self, app: FastAPI, user_id: int, clock: time_machine.Traveller
    ) -> None:
        binding = Binding.registration(session_id="s" * 32, user_id=user_id)
        kept = await issue(app, binding)
        lapsed = await issue(app, binding)
        clock.shift(timedelta(minutes=4, seconds=50))
        await consume(app, kept, binding)
        clock.shift(timedelta(seconds=15))
        with pytest.raises(InvalidCredential):
            await consume(app, lapsed, binding)
        assert await rows(app) == 1  # refused, not deleted: the next challenge prunes it
        await issue(app, binding)
        assert await rows(app) == 1

    @pytest.mark.parametrize("backend", ["postgres"], indirect=True)
    async def test_in_redis_it_is_a_key_that_expires_in_five_minutes(self, app: FastAPI, user_id: int) -> None:
        redis: Redis = app.state.redis
        challenge = await issue(app, Binding.sign_in())
        assert 295 <= await redis.ttl(challenge_service.REDIS_PREFIX + challenge) <= 300
        assert await rows(app) == 0
        await consume(app, challenge, Binding.sign_in())
        assert await redis.exists(challenge_service.REDIS_PREFIX + challenge) == 0


async def test_a_redis_that_cannot_be_reached_is_a_503(tmp_path: Path) -> None:
    from keel.core.db import Database

    database = Database(base_settings(tmp_path))
    redis = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(ServiceUnavailable):
            await challenge_service.issue(database=database, redis=redis, challenge="c", binding=Binding.sign_in())
        with pytest.raises(ServiceUnavailable):
            await challenge_service.consume(database=database, redis=redis, challenge="c", binding=Binding.sign_in())
    finally:
        await redis.aclose()
        await database.engine.dispose()
