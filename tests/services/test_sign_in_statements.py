"""A password sign-in is a fixed, small number of statements (keel.services.signin), on both backends.

Each is named by what it does, so one added to the sign-in path (as the activity log and the device
check each added one) shows here as a decision, not as a slower login nobody chose.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from tests.factories import create_user, login
from tests.services.test_statement_counts import count_statements

# The first word or two and the table of each statement, in order.
KNOWN_DEVICE = [
    "SELECT user",  # the account, by email
    "SELECT totp_credential",  # its second factors: one statement for all of them
    "INSERT user_session",
    "INSERT refresh_token",
    "INSERT activity",  # sign_in, in the same transaction
    "INSERT known_device",  # an upsert that says whether the device is new
]


def shape(statement: str) -> str:
    """ "INSERT user_session" from the SQL of either dialect."""
    verb = statement.split(None, 1)[0].upper()
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)\"?", statement, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else '?'}"


async def test_a_sign_in_from_a_known_device_runs_six_statements(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await create_user(app)
    await login(client, account)
    with count_statements(app) as statements:
        await login(client, account)

    assert [shape(statement) for statement in statements] == KNOWN_DEVICE


async def test_a_new_device_adds_only_its_notice(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await create_user(app)
    await login(client, account, user_agent="first-device/1.0")
    with count_statements(app) as statements:
        await login(client, account, user_agent="second-device/1.0")

    shapes = [shape(statement) for statement in statements]
    assert shapes[: len(KNOWN_DEVICE)] == KNOWN_DEVICE
    notice = shapes[len(KNOWN_DEVICE) :]
    # Whether the account had a device before (the first is no news), the new_device entry and its
    # mail; then, after the commit, only the mail's delivery, which the in-process dispatcher may
    # have begun by the time the answer is read.
    assert notice[:3] == ["SELECT known_device", "INSERT activity", "INSERT email_outbox"]
    assert {shape.split()[1] for shape in notice[3:]} <= {"email_outbox"}, notice
