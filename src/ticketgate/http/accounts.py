"""Accounts endpoints: register, login, and the JWKS that validates the tokens login issues."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ticketgate.accounts.password_policy import PASSWORD_MAX, PASSWORD_MIN
from ticketgate.accounts.service import (
    USERNAME_CHARS,
    USERNAME_MAX,
    USERNAME_MIN,
    AccountError,
    AccountService,
    InvalidCredentials,
    UsernameTaken,
)
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route

_USERNAME_DOC = f"{USERNAME_MIN}-{USERNAME_MAX} characters: letters, digits, _ . @ -"
NewUsername = Annotated[
    str,
    msgspec.Meta(
        min_length=USERNAME_MIN,
        max_length=USERNAME_MAX,
        pattern=f"^{USERNAME_CHARS}+$",
        description=_USERNAME_DOC,
    ),
]
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description=(
            f"{PASSWORD_MIN}-{PASSWORD_MAX} characters, any script; not a common password, "
            "not one repeated character, not the username, no control characters"
        ),
    ),
]
# Login does not restate the sign-up rules: a malformed name or password is simply wrong.
LoginUsername = Annotated[str, msgspec.Meta(min_length=1, max_length=USERNAME_MAX)]
LoginPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=PASSWORD_MAX)]


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: NewUsername
    password: NewPassword


class RegisterResponse(msgspec.Struct):
    user_id: str
    username: str


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: LoginUsername
    password: LoginPassword


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: Annotated[int, msgspec.Meta(description="Seconds until the token expires")]
    token_type: Literal["Bearer"] = "Bearer"


class Jwk(msgspec.Struct):
    kty: str
    use: str
    alg: str
    kid: str
    n: str
    e: str


class JwksResponse(msgspec.Struct):
    keys: list[Jwk]


_NO_STORE = ((b"cache-control", b"no-store"),)
_JWKS_CACHE = ((b"cache-control", b"public, max-age=300"),)
_STATUS = {UsernameTaken: 409, InvalidCredentials: 401}


def _api_error(exc: AccountError) -> ApiError:
    return ApiError(exc.code, exc.message, status=_STATUS.get(type(exc), 400))


class AccountRoutes:
    def __init__(self, service: AccountService) -> None:
        self.service = service

    async def register(self, request: Request) -> Response:
        body = request.json(RegisterRequest)
        try:
            user = await self.service.register(body.username, body.password)
        except AccountError as exc:
            raise _api_error(exc) from None
        return Response.json(201, RegisterResponse(user.id, user.username), _NO_STORE)

    async def login(self, request: Request) -> Response:
        body = request.json(LoginRequest)
        try:
            token = await self.service.login(body.username, body.password)
        except AccountError as exc:
            raise _api_error(exc) from None
        return Response.json(200, TokenResponse(token.access_token, token.expires_in), _NO_STORE)

    async def jwks(self, request: Request) -> Response:
        return Response(200, await self.service.signer.jwks(), _JWKS_CACHE)

    def routes(self) -> list[Route]:
        err = None
        return [
            Route(
                "POST",
                "/api/v1/auth/register",
                self.register,
                AuthPolicy.NONE,
                "Create an account (role `user`)",
                RegisterRequest,
                (
                    (201, RegisterResponse, "Created"),
                    (400, err, "INVALID_REQUEST: malformed body, username or password"),
                    (409, err, "USERNAME_TAKEN"),
                ),
                rate_budget="auth",
            ),
            Route(
                "POST",
                "/api/v1/auth/login",
                self.login,
                AuthPolicy.NONE,
                "Exchange username and password for an RS256 access token",
                LoginRequest,
                (
                    (200, TokenResponse, "Send it as 'Authorization: Bearer <access_token>'"),
                    (400, err, "INVALID_REQUEST: malformed body"),
                    (401, err, "INVALID_CREDENTIALS"),
                ),
                rate_budget="auth",
            ),
            Route(
                "GET",
                "/.well-known/jwks.json",
                self.jwks,
                AuthPolicy.NONE,
                "Public keys that verify the access tokens this gateway issues",
                None,
                ((200, JwksResponse, "JSON Web Key Set (RFC 7517)"),),
            ),
        ]
