"""Register users, check passwords, mint access tokens.

The tokens are ordinary RS256 JWTs whose public key is published as a JWKS, so the gateway
validates its own tokens exactly as it validates an external identity provider's: accounts
are a convenience for a self-contained install, not a second auth path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from ticketgate.accounts import tables
from ticketgate.accounts.keys import TokenSigner
from ticketgate.accounts.password_policy import PASSWORD_MAX, password_problem
from ticketgate.accounts.passwords import PasswordHasher
from ticketgate.accounts.settings import AccountSettings
from ticketgate.database import Database

log = logging.getLogger("ticketgate.accounts")

USERNAME_MIN, USERNAME_MAX = 3, 64
USERNAME_CHARS = r"[A-Za-z0-9_.@-]"
USERNAME = re.compile(f"{USERNAME_CHARS}{{{USERNAME_MIN},{USERNAME_MAX}}}")
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_ROLES = ("user",)
# The roles the gateway checks: `user` (booking) and `admin` (the operator API). Any other
# name would be a typo that silently grants nothing.
KNOWN_ROLES = ("admin", "user")
USER_ID_PREFIX = "usr_"


class AccountError(Exception):
    """A refusal with a wire code; the message never contains a password."""

    code = "INVALID_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidAccountInput(AccountError):
    code = "INVALID_REQUEST"


class UsernameTaken(AccountError):
    code = "USERNAME_TAKEN"


class InvalidCredentials(AccountError):
    code = "INVALID_CREDENTIALS"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    roles: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AccessToken:
    access_token: str
    expires_in: int
    token_type: str = "Bearer"


def validate_username(username: str) -> str:
    if USERNAME.fullmatch(username) is None:
        raise InvalidAccountInput(
            f"username must be {USERNAME_MIN}-{USERNAME_MAX} characters of "
            "letters, digits and _ . @ -"
        )
    return username


def validate_password(password: str, username: str = "") -> str:
    problem = password_problem(password, username)
    if problem is not None:
        raise InvalidAccountInput(problem)
    return password


def validate_roles(roles: Iterable[str]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(roles))
    if not unique:
        raise InvalidAccountInput("a user needs at least one role")
    for role in unique:
        if ROLE.fullmatch(role) is None:
            raise InvalidAccountInput(f"role {role!r} must match {ROLE.pattern}")
        if role not in KNOWN_ROLES:
            raise InvalidAccountInput(f"unknown role {role!r}: roles are {', '.join(KNOWN_ROLES)}")
    return unique


def _user(row: Row[Any]) -> User:
    return User(row.id, row.username, tuple(row.roles.split()), tables.as_utc(row.created_at))


class AccountService:
    def __init__(
        self,
        database: Database,
        signer: TokenSigner,
        settings: AccountSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.signer = signer
        self.settings = settings
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            concurrency=settings.hash_concurrency,
        )
        self._clock = clock
        database.register(tables.metadata)
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the tables, load (or create) the signing key, prepare the dummy hash.

        Called from the app's start-up; every public method also calls it, so forgetting it
        costs latency on the first request, not correctness.
        """
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.database.create_all()
            await self.signer.load()
            await self.hasher.warm_up()
            self._started = True

    async def register(self, username: str, password: str) -> User:
        """Self-service sign-up: always the plain `user` role."""
        return await self.create_user(username, password, DEFAULT_ROLES)

    async def create_user(
        self, username: str, password: str, roles: Iterable[str] = DEFAULT_ROLES
    ) -> User:
        """Create a user with `roles` (the admin CLI passes ("admin", "user")).

        There is no default password anywhere: the operator chooses it, the same rules apply.
        """
        validate_username(username)
        validate_password(password, username)
        role_list = validate_roles(roles)
        await self.start()
        password_hash = await self.hasher.hash(password)
        user = User(
            f"{USER_ID_PREFIX}{secrets.token_hex(12)}", username, role_list, tables.utcnow()
        )
        statement = (
            self.database.insert(tables.users)
            .values(
                id=user.id,
                username=username,
                username_key=username.lower(),
                password_hash=password_hash,
                roles=" ".join(role_list),
                created_at=user.created_at,
            )
            .on_conflict_do_nothing()
            .returning(tables.users.c.id)
        )
        async with self.database.write() as conn:
            inserted = (await conn.execute(statement)).first()
        if inserted is None:
            raise UsernameTaken(f"username {username!r} is already taken")
        log.info("created user %s with roles %s", user.id, ",".join(role_list))
        return user

    async def authenticate(self, username: str, password: str) -> User:
        """The user whose password this is, or InvalidCredentials; same cost either way."""
        if USERNAME.fullmatch(username) is None or not 1 <= len(password) <= PASSWORD_MAX:
            # Refused on shape alone, whatever the database holds: nothing to learn from timing.
            raise InvalidCredentials("invalid username or password")
        await self.start()
        async with self.database.read() as conn:
            row = (
                await conn.execute(
                    select(tables.users).where(tables.users.c.username_key == username.lower())
                )
            ).first()
        if row is None:
            await self.hasher.verify_dummy(password)
            raise InvalidCredentials("invalid username or password")
        if not await self.hasher.verify(row.password_hash, password):
            raise InvalidCredentials("invalid username or password")
        if self.hasher.needs_rehash(row.password_hash):
            await self._rehash(row.id, row.password_hash, password)
        return _user(row)

    async def _rehash(self, user_id: str, old_hash: str, password: str) -> None:
        """Upgrade a hash made with older parameters, now that we know the password.

        Conditional on the old hash, so a password change that raced this login wins.
        """
        new_hash = await self.hasher.hash(password)
        async with self.database.write() as conn:
            await conn.execute(
                update(tables.users)
                .where(tables.users.c.id == user_id, tables.users.c.password_hash == old_hash)
                .values(password_hash=new_hash)
            )
        log.info("rehashed the password of user %s with the current parameters", user_id)

    async def login(self, username: str, password: str) -> AccessToken:
        return await self.issue_token(await self.authenticate(username, password))

    async def issue_token(self, user: User) -> AccessToken:
        now = int(self._clock())
        ttl = self.settings.token_ttl_sec
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user.id,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
            "roles": list(user.roles),
        }
        return AccessToken(await self.signer.sign(claims), ttl)

    async def get_user(self, user_id: str) -> User | None:
        await self.start()
        async with self.database.read() as conn:
            row = (
                await conn.execute(select(tables.users).where(tables.users.c.id == user_id))
            ).first()
        return None if row is None else _user(row)
