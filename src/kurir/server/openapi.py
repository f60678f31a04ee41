"""The OpenAPI 3.1 document, generated from the route table and the msgspec body types.

This module owns turning :data:`kurir.server.http.ROUTES` into an OpenAPI document; schemas
come from :func:`msgspec.json.schema_components`, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kurir.server.groups_http import GROUP_ROUTES
from kurir.server.http import ROUTES, STATUS
from kurir.server.metadata_http import METADATA_ROUTES
from kurir.wire import api

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"


def _ref(t: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": _REF.format(name=t.__name__)}


def openapi_document(version: str) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of this server."""
    types: set[type[msgspec.Struct]] = {api.ErrorBody}
    for spec in (*ROUTES, *GROUP_ROUTES, *METADATA_ROUTES):
        for t in (spec.request, spec.response):
            if t is not None:
                types.add(t)
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for spec in (*ROUTES, *GROUP_ROUTES, *METADATA_ROUTES):
        op: dict[str, Any] = {"operationId": spec.name, "summary": spec.summary}
        params: list[dict[str, Any]] = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d in spec.path_params
        ]
        if spec.app_key:
            params.append(
                {
                    "name": "X-Kurir-App-Key",
                    "in": "header",
                    "required": True,
                    "description": "The client key of the address's app.",
                    "schema": {"type": "string"},
                }
            )
        if params:
            op["parameters"] = params
        if spec.auth:
            op["security"] = [{"deviceBasic": []}]
        if spec.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(spec.request)}},
            }
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": "Success."}
        if spec.response is not None:
            ok["content"] = {"application/json": {"schema": _ref(spec.response)}}
        responses[str(spec.status)] = ok
        for code in spec.errors:
            status = str(STATUS[code])
            entry = responses.setdefault(
                status,
                {
                    "description": "",
                    "content": {"application/json": {"schema": _ref(api.ErrorBody)}},
                },
            )
            entry["description"] = ", ".join(filter(None, [entry["description"], code.value]))
        responses["500"] = {
            "description": "internal",
            "content": {"application/json": {"schema": _ref(api.ErrorBody)}},
        }
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
        op["responses"] = responses
    paths["/v1/ws"] = {
        "get": {
            "operationId": "websocket",
            "summary": "Upgrade to the messaging WebSocket (binary MessagePack frames; "
            "see docs/protocol.md).",
            "security": [{"deviceBasic": []}],
            "responses": {"101": {"description": "Switching protocols."}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "kurir", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "deviceBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user `<account_id>.<device_id>`, password the device's.",
                }
            },
        },
    }
