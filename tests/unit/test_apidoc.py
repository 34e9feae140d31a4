"""The OpenAPI document: valid, and in step with the routes the app serves."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from openapi_spec_validator import validate

from twisted.internet.task import Clock

from imagecatcher.db.live import LiveQueries
from imagecatcher.db.pool import Database
from imagecatcher.metrics import Metrics
from imagecatcher.web.apidoc import build_document
from imagecatcher.web.apidocs import asset_names
from imagecatcher.web.app import CatcherAPI
from tests.unit.test_http import FakeRepo, FakeStore, _get

_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
#: What werkzeug adds on its own: HEAD for every GET; nothing we route.
_IMPLIED = {"HEAD", "OPTIONS"}


def _api() -> CatcherAPI:
    """The app with every optional resource mounted (metrics, live pages)."""
    return CatcherAPI(
        FakeRepo(),  # type: ignore[arg-type]
        FakeStore(),  # type: ignore[arg-type]
        Clock(),
        metrics=Metrics(),
        live=LiveQueries(cast(Database, None)),
    )


def _routes(api: CatcherAPI) -> set[tuple[str, str]]:
    """(path template, method) of every Klein route, ``<x>``/``<int:x>`` as ``{x}``."""
    found = set()
    for rule in api.url_map().iter_rules():
        template = re.sub(
            r"<(?:[a-z]+(?:\([^)]*\))?:)?([A-Za-z_]\w*)>", r"{\1}", rule.rule
        )
        for method in set(rule.methods or ()) - _IMPLIED:
            found.add((template, method.lower()))
    return found


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    }


def test_document_is_valid_openapi_3_1() -> None:
    """The assembled document validates as OpenAPI 3.1."""
    document = build_document("1.0")
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_every_operation_routed() -> None:
    """The app's URL map and the document's paths name the same operations."""
    routes, documented = _routes(_api()), _documented(build_document())
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations that are not routed"
    assert ("/service/v1/capture-image-content/{acqid}", "put") in routes


def test_route_comparison_converts_werkzeug_converters() -> None:
    """``<int:x>`` and ``<x>`` both become ``{x}`` (so drift is noticed)."""
    api = _api()
    api.url_map().add(
        type(next(api.url_map().iter_rules()))(
            "/service/v1/x/<int:n>/<m>", methods=["GET"]
        )
    )
    assert ("/service/v1/x/{n}/{m}", "get") in _routes(api)
    assert ("/service/v1/x/{n}/{m}", "get") not in _documented(build_document())


def test_error_responses_use_the_error_schema() -> None:
    """Every JSON 4xx/5xx is the Error shape, or a documented superset of TileInfo."""
    document = build_document()
    assert document["components"]["schemas"]["Error"] == {
        "type": "object",
        "description": document["components"]["schemas"]["Error"]["description"],
        "required": ["errormessage"],
        "properties": {"errormessage": {"type": "string"}},
    }
    text = json.dumps(document)
    assert text.count('"#/components/schemas/Error"') > 20


def test_openapi_json_is_served() -> None:
    """GET openapi.json answers the document as JSON."""
    response, body = _get(_api(), "/service/v1/openapi.json")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    served = json.loads(body)
    assert served["paths"].keys() == build_document()["paths"].keys()


def test_docs_page_and_its_files_are_served_locally() -> None:
    """The page names only files the daemon serves, no external URL."""
    api = _api()
    response, page = _get(api, "/service/v1/docs")
    assert response.code == 200
    html = page.decode("utf-8")
    assert "http:" not in html and "https:" not in html and "//" not in html
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {r for r in referenced if r.startswith("docs/")} == {
        f"docs/{n}" for n in asset_names()
    }
    for ref in referenced:
        response, body = _get(api, f"/service/v1/{ref}")
        assert response.code == 200 and body, ref
    response, _ = _get(api, "/service/v1/docs/..%2Fapidocs.py")
    assert response.code == 404


def test_docs_script_disables_the_online_validator() -> None:
    """Swagger UI's validator badge would call a remote service: it is off."""
    response, script = _get(_api(), "/service/v1/docs/docs.js")
    assert response.code == 200 and b"validatorUrl: null" in script
    assert b'url: "openapi.json"' in script
