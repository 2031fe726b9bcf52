"""Which passwords an account may have: NIST SP 800-63B, section 5.1.1.2.

Length is what makes a password strong, so the rules are few: at least 8 characters
(counted as Unicode code points, so any script and emoji count the same), no composition
rules, but never a password attackers try first. That is a value from the blocklist shipped
beside this module (`common-passwords.txt.gz`: the 8,000+ passwords of 8 or more characters
from the 20,000 most common leaked ones, lower-cased; the list Django's CommonPasswordValidator
uses, BSD-licensed), a single repeated character, or the username itself. Control characters
are refused: they cannot be typed reliably and are a sign of a mangled or hostile input.
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from importlib import resources

PASSWORD_MIN, PASSWORD_MAX = 8, 256
BLOCKLIST = "common-passwords.txt.gz"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The blocklist, lower-cased; read once per process (~8,000 entries, ~0.5 MB)."""
    data = resources.files(__package__).joinpath(BLOCKLIST).read_bytes()
    return frozenset(gzip.decompress(data).decode().split("\n")) - {""}


def password_problem(password: str, username: str = "") -> str | None:
    """Why `password` is refused (one line, never quoting it), or None when it is fine."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters long"
    if any(unicodedata.category(char) == "Cc" for char in password):
        return "password must not contain control characters"
    if len(set(password)) == 1:
        return "password must not be one repeated character"
    folded = password.casefold()
    if username and folded == username.casefold():
        return "password must not be the username"
    if folded in common_passwords() or folded.strip() in common_passwords():
        return "password is too common: it is on the list of passwords attackers try first"
    return None
