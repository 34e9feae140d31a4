"""API tokens and their roles: the value of ``API_TOKENS``, checked at load.

``API_TOKENS`` is either a JSON list of ``{"token": ..., "role": ...}``
objects or the path of a file with one ``role token`` pair per line (blank
lines and lines starting with ``#`` are skipped); the file is read once, when
the configuration loads.  A token is an RFC 6750 ``b64token`` of at least
:data:`MIN_TOKEN_LENGTH` characters; each appears once.  Roles are ``write``
(capture, acquisition lifecycle, calibration import) and ``render``
(``next-tile``, ``tile-state``); ``write`` implies ``render``.

A :class:`TokenTable` never shows its tokens (not in ``repr``, not in an
error message) and looks a presented token up in constant time: every
configured token is compared with :func:`hmac.compare_digest`, whichever
matches.
"""

from __future__ import annotations

import enum
import hmac
import re
from pathlib import Path
from typing import Any

import attrs

#: Shortest token accepted.
MIN_TOKEN_LENGTH = 16
#: RFC 6750 §2.1 ``b64token``: what may follow ``Bearer`` in a header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class Role(enum.Enum):
    """What a token may do besides reading."""

    WRITE = "write"
    RENDER = "render"

    def grants(self, needed: Role) -> bool:
        """Whether a token of this role may call a route needing ``needed``."""
        return self is needed or self is Role.WRITE


@attrs.frozen(repr=False)
class TokenTable:
    """The configured tokens, each with its role."""

    _entries: tuple[tuple[bytes, Role], ...] = attrs.field(alias="entries")

    def __repr__(self) -> str:
        counts = {role: 0 for role in Role}
        for _, role in self._entries:
            counts[role] += 1
        text = ", ".join(f"{role.value}={n}" for role, n in counts.items())
        return f"TokenTable({text})"

    def __len__(self) -> int:
        return len(self._entries)

    def role_of(self, presented: bytes) -> Role | None:
        """The role of a presented token; None when no configured token matches.

        Every configured token is compared, in constant time, whether or not
        an earlier one matched.
        """
        found: Role | None = None
        for token, role in self._entries:
            if hmac.compare_digest(token, presented):
                found = role
        return found


def _entry(token: Any, role: Any, where: str) -> tuple[bytes, Role]:
    if not isinstance(token, str) or not isinstance(role, str):
        raise TypeError(f"{where}: token and role must be strings")
    try:
        parsed = Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ValueError(f"{where}: unknown role {role!r} (expected {known})") from None
    # The token itself is never part of a message.
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where}: token too short ({len(token)} characters,"
            f" at least {MIN_TOKEN_LENGTH})"
        )
    if not _B64TOKEN.fullmatch(token):
        raise ValueError(
            f"{where}: token has characters other than letters, digits and"
            " -._~+/ (and trailing =)"
        )
    return token.encode("ascii"), parsed


def _from_list(items: list[Any]) -> list[tuple[bytes, Role]]:
    entries = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or set(item) != {"token", "role"}:
            raise TypeError(f'entry {i}: expected {{"token": ..., "role": ...}}')
        entries.append(_entry(item["token"], item["role"], f"entry {i}"))
    return entries


def _from_file(path: Path) -> list[tuple[bytes, Role]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read token file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"token file {path} is not UTF-8 text") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path} line {number}"
        if len(fields) != 2:
            raise ValueError(f"{where}: expected 'role token'")
        entries.append(_entry(fields[1], fields[0], where))
    return entries


def parse_api_tokens(value: Any) -> TokenTable:
    """Read ``API_TOKENS``: a JSON list of token objects or a token file's path."""
    if isinstance(value, str):
        entries = _from_file(Path(value))
    elif isinstance(value, list):
        entries = _from_list(value)
    else:
        raise TypeError(
            'expected a list of {"token": ..., "role": ...} or a file path,'
            f" got {type(value).__name__}"
        )
    if not entries:
        raise ValueError("no tokens (leave the key out to turn access control off)")
    seen: set[bytes] = set()
    for i, (token, _) in enumerate(entries, 1):
        if token in seen:
            raise ValueError(f"entry {i}: the same token is configured twice")
        seen.add(token)
    return TokenTable(entries=tuple(entries))


def bearer_token(header: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token
