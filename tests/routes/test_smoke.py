from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.factories import signed_in


async def test_me(app: FastAPI, client: httpx.AsyncClient) -> None:
    account, tokens = await signed_in(app, client)
    response = await client.get("/api/v1/users/me", headers=tokens.headers)
    assert response.status_code == 200
    assert response.json()["email"] == account.email
