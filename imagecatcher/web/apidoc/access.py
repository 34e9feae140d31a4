"""OpenAPI fragment: the bearer-token security scheme (``API_TOKENS``).

:func:`amend` marks the operations of :data:`imagecatcher.web.access.ROUTE_ROLES`
(the table the daemon checks) with ``security`` and their 401 and 403
answers.  Their paths and methods come from the resources' own routers, so
the document follows a renamed or moved route; an operation that no
fragment describes (yet) is skipped.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from imagecatcher.tokens import Role
from imagecatcher.web.access import ROUTE_ROLES
from imagecatcher.web.app import API_ROOT
from imagecatcher.web.calibrations import Calibrations
from imagecatcher.web.capture import Capture, Lifecycle
from imagecatcher.web.render import Render

#: The resources that have routes needing a role.
_RESOURCES = (Lifecycle, Capture, Calibrations, Render)
#: The name of the scheme in ``components.securitySchemes``.
SCHEME = "bearer"

PATHS: dict[str, Any] = {}

SECURITY_SCHEMES: dict[str, Any] = {
    SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "Enforced only when the daemon's API_TOKENS is set: the operations"
            " marked with this scheme then need a token with the role named in"
            " their description (write implies render); with READ_REQUIRES_TOKEN"
            " every other operation but ping needs a token of any role."
        ),
    }
}

# The Error schema is the common fragment's.
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_UNAUTHORIZED = {
    "description": "No token, or one that is not configured.",
    "headers": {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with: Bearer.",
            "schema": {"type": "string"},
        }
    },
    "content": _ERROR,
}
_FORBIDDEN = {"description": "The token lacks the role.", "content": _ERROR}
_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def protected_operations() -> Iterator[tuple[str, str, Role]]:
    """(OpenAPI path, lower-case method, role) of every route needing a role."""
    for resource in _RESOURCES:
        for rule in resource.router.url_map.iter_rules():
            role = ROUTE_ROLES.get(f"{resource.__name__}.{rule.endpoint}")
            if role is None:
                continue
            path = API_ROOT + _PARAM.sub(r"{\1}", rule.rule)
            for method in sorted(rule.methods or ()):
                if method not in ("HEAD", "OPTIONS"):
                    yield path, method.lower(), role


def amend(document: dict[str, Any]) -> None:
    """Add ``security`` and 401/403 to the operations needing a role."""
    paths = document.get("paths", {})
    for path, method, role in protected_operations():
        operation = paths.get(path, {}).get(method)
        if not isinstance(operation, dict):
            continue  # not described (yet)
        # A token, or none: access control is off unless API_TOKENS is set
        # (the empty requirement says so, and keeps fuzzers from expecting a
        # refusal of a request without one).
        operation["security"] = [{SCHEME: []}, {}]
        note = f"Needs a token with the {role.value} role when API_TOKENS is set."
        description = operation.get("description")
        operation["description"] = f"{description}\n\n{note}" if description else note
        responses = operation.setdefault("responses", {})
        responses.setdefault("401", _copy(_UNAUTHORIZED))
        responses.setdefault("403", _copy(_FORBIDDEN))


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(value)
