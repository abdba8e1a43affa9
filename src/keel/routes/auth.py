from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from keel.deps import (
    CacheDep,
    ClientIP,
    CurrentUser,
    DispatcherDep,
    LoginFormDep,
    SessionDep,
    SessionId,
    SettingsDep,
)
from keel.routes import API_PREFIX
from keel.schemas.auth import (
    LogoutRequest,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    SessionRead,
    TokenPair,
    VerifyEmailConfirm,
)
from keel.schemas.common import Message, problem_responses
from keel.schemas.user import UserCreate, UserRead
from keel.services import account as account_service
from keel.services import auth as auth_service
from keel.services import session as session_service
from keel.services import user as user_service

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

REGISTERED = "If this address can be registered, an email is on its way to it with the next step."


def _no_store(response: Response) -> None:
    # Token responses must never be kept by a browser or proxy cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(409, 422),
)
async def register(data: UserCreate, session: SessionDep, settings: SettingsDep, dispatcher: DispatcherDep) -> Message:
    """Create an account. The answer is the same whether or not the email already has one."""
    await user_service.register(session=session, settings=settings, dispatcher=dispatcher, data=data)
    return Message(detail=REGISTERED)


@router.post("/login", response_model=TokenPair, responses=problem_responses(401, 403, 422))
async def login(
    form: LoginFormDep, request: Request, response: Response, session: SessionDep, settings: SettingsDep, ip: ClientIP
) -> TokenPair:
    """Sign in with email (as `username`) and password; opens a session and returns its tokens."""
    pair = await auth_service.login(
        session=session,
        settings=settings,
        email=form.username,
        password=form.password,
        user_agent=request.headers.get("user-agent"),
        ip=ip,
    )
    _no_store(response)
    return pair


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(401, 422))
async def refresh(
    data: RefreshRequest, response: Response, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> TokenPair:
    """Exchange a refresh token for a new token pair; the old refresh token stops working."""
    pair = await auth_service.refresh(session=session, cache=cache, settings=settings, refresh_token=data.refresh_token)
    _no_store(response)
    return pair


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 422))
async def logout(user: CurrentUser, session: SessionDep, cache: CacheDep, data: LogoutRequest | None = None) -> None:
    """End the current session at once, in every worker."""
    await auth_service.logout(
        session=session, cache=cache, principal=user, refresh_token=data.refresh_token if data else None
    )


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401))
async def logout_all(user: CurrentUser, session: SessionDep, cache: CacheDep) -> None:
    """End every session of the current user, this one included."""
    await auth_service.logout_all(session=session, cache=cache, principal=user)


@router.get("/sessions", response_model=list[SessionRead], responses=problem_responses(401))
async def list_sessions(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> list[SessionRead]:
    """List the current user's active sessions, newest use first."""
    rows = await session_service.list_active(
        session=session, user_id=user.user_id, idle_seconds=settings.session_idle_ttl_seconds
    )
    return [SessionRead.model_validate({**row.model_dump(), "current": row.id == user.session_id}) for row in rows]


@router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 404, 422)
)
async def revoke_session(session_id: SessionId, user: CurrentUser, session: SessionDep, cache: CacheDep) -> None:
    """End one of the current user's sessions (for example a lost device)."""
    await session_service.revoke_one(session=session, cache=cache, principal=user, session_id=session_id)


@router.post("/password-change", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(400, 401, 422))
async def change_password(
    data: PasswordChange,
    user: CurrentUser,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> None:
    """Change the password (the current one is required); every other session ends."""
    await auth_service.change_password(
        session=session,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        principal=user,
        current_password=data.current_password,
        new_password=data.new_password,
    )


@router.post(
    "/verify-email/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(401, 409),
)
async def request_verification(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Send a new verification link to the current user's address."""
    await account_service.request_verification(
        session=session, settings=settings, dispatcher=dispatcher, user_id=user.user_id
    )
    return Message(detail="A verification link is on its way.")


@router.post("/verify-email/confirm", response_model=UserRead, responses=problem_responses(400, 422))
async def confirm_verification(
    data: VerifyEmailConfirm, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> UserRead:
    """Confirm an email address with the token from the verification link."""
    user = await account_service.confirm_verification(session=session, cache=cache, settings=settings, token=data.token)
    return UserRead.model_validate(user)


@router.post(
    "/password-reset/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(422),
)
async def request_password_reset(
    data: PasswordResetRequest, session: SessionDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Email a password reset link. The answer is the same whether or not the address has an account."""
    await account_service.request_reset(session=session, settings=settings, dispatcher=dispatcher, email=data.email)
    return Message(detail="If this address has an account, a reset link is on its way to it.")


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(400, 422))
async def confirm_password_reset(
    data: PasswordResetConfirm, session: SessionDep, cache: CacheDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> None:
    """Set a new password with the token from the reset link; every session ends."""
    await account_service.confirm_reset(
        session=session,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        token=data.token,
        new_password=data.new_password,
        confirm_password=data.confirm_password,
    )
