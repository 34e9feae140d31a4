"""Who may call which route: the role table and the check (``API_TOKENS``).

Routes are named by the endpoint :func:`imagecatcher.web.app._mount` gives
them, ``<resource class>.<method>``.  :data:`ROUTE_ROLES` lists the routes
that change things and the role each needs; every other route reads.  The
OpenAPI fragment :mod:`imagecatcher.web.apidoc.access` documents the same
table.

With no ``API_TOKENS`` there is no :class:`AccessPolicy` and nothing is
checked.  With one, a route needing a role answers 401 (no token, or one
that is not configured; with ``WWW-Authenticate: Bearer``) or 403 (a token
without the role); a read route needs a token (any configured one) only
when ``READ_REQUIRES_TOKEN`` is true; :data:`OPEN_ROUTES` never do.
Presented tokens are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from twisted.web.iweb import IRequest

from imagecatcher.tokens import Role, TokenTable, bearer_token

#: The role each route that changes things needs, by endpoint name.
ROUTE_ROLES: Mapping[str, Role] = {
    "Lifecycle.start_acquisition": Role.WRITE,
    "Lifecycle.create_rois": Role.WRITE,
    "Lifecycle.end_acquisition": Role.WRITE,
    "Lifecycle.store_ancillary_files": Role.WRITE,
    "Capture.capture": Role.WRITE,
    "Calibrations.post_calibrations": Role.WRITE,
    "Render.next_tile": Role.RENDER,
    "Render.tile_state": Role.RENDER,
}
#: The capture route, whose body is checked before it streams into a sink.
CAPTURE_ENDPOINT = "Capture.capture"
#: Routes open even when reads need a token: health checks carry none.
OPEN_ROUTES = frozenset({"Operations.ping"})


@attrs.frozen
class Refusal:
    """Why a request is refused: its status (401 or 403) and message."""

    status: int
    message: str
    #: The RFC 6750 ``error`` of a 401 for a token that is not configured.
    error: str = ""

    def headers(self) -> dict[bytes, bytes]:
        """The response headers the refusal needs (RFC 6750 §3)."""
        if self.status != 401:
            return {}
        challenge = 'Bearer realm="imagecatcher"'
        if self.error:
            challenge += f', error="{self.error}"'
        return {b"www-authenticate": challenge.encode("ascii")}


_MISSING = Refusal(401, "Authorization: Bearer <token> required")
_UNKNOWN = Refusal(401, "Unknown token", "invalid_token")


@attrs.frozen
class AccessPolicy:
    """The configured tokens and whether reads need one."""

    tokens: TokenTable
    read_requires_token: bool = False

    def refusal(self, endpoint: str, authorization: bytes | None) -> Refusal | None:
        """Why a call of ``endpoint`` with this Authorization header is refused;
        None when it is allowed."""
        needed = ROUTE_ROLES.get(endpoint)
        if needed is None and (not self.read_requires_token or endpoint in OPEN_ROUTES):
            return None
        token = bearer_token(authorization)
        if token is None:
            return _MISSING
        role = self.tokens.role_of(token)
        if role is None:
            return _UNKNOWN
        if needed is not None and not role.grants(needed):
            return Refusal(403, f"This token lacks the {needed.value} role")
        return None

    def check(self, endpoint: str, request: IRequest) -> Refusal | None:
        """:meth:`refusal` for a request's Authorization header."""
        values = request.requestHeaders.getRawHeaders(b"authorization")
        return self.refusal(endpoint, values[0] if values else None)
