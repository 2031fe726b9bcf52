"""The auth part: the JWT authenticator (with the development bypass behind it) and, when
the built-in accounts serve, the account service whose signing keys it trusts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ticketgate.accounts.keys import LocalJwksSource, TokenSigner
from ticketgate.accounts.service import AccountService
from ticketgate.config import Settings
from ticketgate.database import Database
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.jwks import JwksCache, JwksSource
from ticketgate.middleware.jwt_auth import JwtAuthenticator


@dataclass(frozen=True, slots=True)
class Auth:
    authenticator: JwtAuthenticator
    keys: JwksCache | None  # the JWKS the authenticator verifies RS/ES tokens with
    accounts: AccountService | None  # None unless AUTH_ACCOUNTS_ENABLED

    async def preload_keys(self) -> None:
        """Fetch the key set before serving, so the first tokens are not refused for it."""
        if self.keys is not None:
            await self.keys.preload()


def build_auth(settings: Settings, database: Database | None) -> Auth:
    jwt_settings = settings.jwt
    source: JwksSource | None = None
    accounts: AccountService | None = None
    if settings.accounts_enabled and database is not None:
        signer = TokenSigner(database, settings.accounts.signing_key_pem)
        accounts = AccountService(database, signer, settings.accounts)
        source = LocalJwksSource(signer)
        # Our own tokens carry our issuer and audience; check them unless told otherwise.
        jwt_settings = dataclasses.replace(
            jwt_settings,
            issuer=jwt_settings.issuer or (settings.accounts.issuer,),
            audience=jwt_settings.audience or (settings.accounts.audience,),
        )
    keys = jwt_settings.jwks_cache(source)
    authenticator = JwtAuthenticator(
        jwt_settings, keys, DevBypassAuthenticator(settings.dev_bypass_enabled)
    )
    return Auth(authenticator, keys, accounts)
