"""Fixtures for the route tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from tests.routes.transports import TRANSPORTS, Transport, jarless_client


@pytest.fixture(params=TRANSPORTS, ids=[transport.mode for transport in TRANSPORTS])
async def transport(request: pytest.FixtureRequest, app: FastAPI, settings: Settings) -> AsyncIterator[Transport]:
    """The test runs once with the refresh token in JSON bodies and once in the web app's cookie."""
    async with jarless_client(app) as http:
        yield request.param(http, settings)
