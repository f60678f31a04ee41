"""The HTTP transport: the route table, request decoding, and errors as JSON.

This module owns the mapping between HTTP (paths, methods, statuses, headers) and the
services. Every route is declared once in :data:`ROUTES` with its body types; the OpenAPI
document is generated from the same table. Every failure becomes
``{"error": {"code", "message"}}`` with a proper status; exceptions never reach a client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar
from uuid import UUID

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kurir.server.context import Services, client_host, services_of
from kurir.server.errors import RateLimited, Refused
from kurir.server.metadata_app import metadata_of
from kurir.server.services.accounts import AuthedDevice
from kurir.server.storage.records import (
    KeyBundle,
    KeyUpdate,
    OneTimeKey,
    SignedKey,
)
from kurir.server.types import AccountId, DeviceId
from kurir.wire import api
from kurir.wire.errors import ErrorCode, WireError
from kurir.wire.limits import MAX_HTTP_BODY_BYTES

__all__ = [
    "ROUTES",
    "STATUS",
    "RouteSpec",
    "authenticate",
    "error_response",
    "http_exception_handler",
    "json_response",
    "read_body",
    "routes",
    "starlette_routes",
]

_log = logging.getLogger("kurir.server.http")
APP_KEY_HEADER: Final = "x-kurir-app-key"

STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_ADDRESS: 400,
    ErrorCode.UNKNOWN_APP: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.WRONG_APP: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INVALID_CODE: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_ACCOUNT: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.IDENTITY_KEY_CHANGED: 409,
    ErrorCode.MISMATCHED_DEVICES: 409,
    ErrorCode.STALE_DEVICES: 410,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.KEYS_NOT_SET: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.MAILBOX_FULL: 507,
    ErrorCode.TOO_MANY_DEVICES: 409,
    ErrorCode.GROUP_FULL: 409,
    ErrorCode.NOT_A_MEMBER: 403,
    ErrorCode.INTERNAL: 500,
}
"""HTTP status of each error code."""

T = TypeVar("T")
Handler = Callable[[Request, Services], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One HTTP route: what it takes, what it returns, how it is protected."""

    method: str
    path: str
    name: str
    summary: str
    handler: Handler
    request: type[msgspec.Struct] | None = None
    response: type[msgspec.Struct] | None = None
    status: int = 200
    auth: bool = False
    app_key: bool = False
    path_params: tuple[tuple[str, str], ...] = ()
    errors: tuple[ErrorCode, ...] = ()


def json_response(body: msgspec.Struct, status: int = 200) -> Response:
    """A JSON response of a body struct."""
    return Response(api.encode_json(body), status, media_type="application/json")


def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error response for ``code``."""
    body = api.ErrorBody(api.ErrorDetail(code.value, message))
    return Response(
        api.encode_json(body), STATUS[code], headers=headers, media_type="application/json"
    )


def _refusal(exc: Refused) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if exc.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Basic realm="kurir"'
    return error_response(exc.code, exc.message, headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path or method) as JSON errors."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return error_response(ErrorCode.NOT_FOUND, "no such route")
    if status == 405:
        return error_response(ErrorCode.METHOD_NOT_ALLOWED, "method not allowed on this route")
    return error_response(ErrorCode.INVALID_REQUEST, "bad request")


async def read_body(request: Request, body_type: type[T]) -> T:
    """Read and decode a JSON body of ``body_type``, refusing one over the size limit.

    Raises:
        Refused: ``payload_too_large`` or the decoder's error code; nothing was changed.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_HTTP_BODY_BYTES:
        raise Refused(ErrorCode.PAYLOAD_TOO_LARGE, f"body exceeds {MAX_HTTP_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_HTTP_BODY_BYTES:
            raise Refused(ErrorCode.PAYLOAD_TOO_LARGE, f"body exceeds {MAX_HTTP_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return api.decode_json(b"".join(chunks), body_type)
    except WireError as exc:
        raise Refused(exc.code, exc.message) from None


async def authenticate(request: Request, services: Services) -> AuthedDevice:
    """The device whose credentials the request's Authorization header carries."""
    return await services.accounts.authenticate(
        request.headers.get("authorization"), client_host(request)
    )


def _endpoint(spec: RouteSpec) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await spec.handler(request, services_of(request))
        except Refused as exc:
            return _refusal(exc)
        except Exception:
            # our bug: log the route (no identifiers, no bodies), tell the peer nothing more
            _log.exception("internal error in route %s", spec.name)
            return error_response(ErrorCode.INTERNAL, "internal server error")

    endpoint.__name__ = spec.name
    return endpoint


# -- handlers ---------------------------------------------------------------------------


async def _health(request: Request, services: Services) -> Response:
    return json_response(api.Health("ok"))


async def _apps(request: Request, services: Services) -> Response:
    apps = services.accounts.catalogue.apps
    return json_response(
        api.AppList(
            [api.AppInfo(a.id, a.display_name, a.identifier_kind.value, a.colour) for a in apps]
        )
    )


async def _verification(request: Request, services: Services) -> Response:
    body = await read_body(request, api.VerificationRequest)
    await services.accounts.request_code(
        body.address, request.headers.get(APP_KEY_HEADER), client_host(request)
    )
    return Response(status_code=202)


async def _register(request: Request, services: Services) -> Response:
    body = await read_body(request, api.RegistrationRequest)
    account_id = await services.accounts.register(
        address_text=body.address,
        code=body.code,
        password=body.password,
        registration_id=body.registration_id,
        device_name=body.device_name,
        client_key=request.headers.get(APP_KEY_HEADER),
    )
    return json_response(api.RegistrationResponse(account_id, 1))


def _signed(key: api.SignedPreKey | api.KemPreKey) -> SignedKey:
    return SignedKey(key.key_id, key.public_key, key.signature)


async def _put_keys(request: Request, services: Services) -> Response:
    device = await authenticate(request, services)
    body = await read_body(request, api.KeyUpload)
    update = KeyUpdate(
        identity_key=body.identity_key,
        signed_prekey=None if body.signed_prekey is None else _signed(body.signed_prekey),
        pq_last_resort=(
            None if body.pq_last_resort_prekey is None else _signed(body.pq_last_resort_prekey)
        ),
        one_time=(
            None
            if body.one_time_prekeys is None
            else tuple(OneTimeKey(k.key_id, k.public_key) for k in body.one_time_prekeys)
        ),
        pq_one_time=(
            None
            if body.pq_one_time_prekeys is None
            else tuple(_signed(k) for k in body.pq_one_time_prekeys)
        ),
    )
    for keys in (update.one_time, update.pq_one_time):
        if keys is not None and len({k.key_id for k in keys}) != len(keys):
            raise Refused(ErrorCode.INVALID_REQUEST, "one-time prekey ids must be unique")
    await services.keys.upload(device, update)
    return Response(status_code=204)


async def _key_counts(request: Request, services: Services) -> Response:
    device = await authenticate(request, services)
    counts = await services.keys.counts(device)
    return json_response(api.KeyCounts(counts.ec, counts.pq))


def _bundle_body(bundle: KeyBundle) -> api.PreKeyBundle:
    devices = [
        api.DeviceBundle(
            device_id=d.device_id,
            registration_id=d.registration_id,
            signed_prekey=api.SignedPreKey(
                d.signed_prekey.key_id, d.signed_prekey.public_key, d.signed_prekey.signature
            ),
            prekey=None if d.prekey is None else api.PreKey(d.prekey.key_id, d.prekey.public_key),
            pq_prekey=api.KemPreKey(
                d.pq_prekey.key_id, d.pq_prekey.public_key, d.pq_prekey.signature
            ),
        )
        for d in bundle.devices
    ]
    return api.PreKeyBundle(bundle.identity_key, devices)


async def _get_keys(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    account_text = request.path_params["account_id"]
    device_text = request.path_params["device_id"]
    try:
        account_id = AccountId(UUID(account_text))
    except ValueError:
        raise Refused(ErrorCode.INVALID_REQUEST, "account_id must be a UUID") from None
    device_id: DeviceId | None
    if device_text == "*":
        device_id = None
    elif device_text.isdigit() and len(device_text) <= 10 and int(device_text) >= 1:
        device_id = DeviceId(int(device_text))
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, "device_id must be a positive integer or *")
    if not await metadata_of(request).policy.may_fetch_keys(caller.account_id, account_id):
        raise Refused(ErrorCode.NOT_FOUND, "no keys for that account or device")  # issue 5
    bundle = await services.keys.bundle(caller, account_id, device_id)
    return json_response(_bundle_body(bundle))


async def _directory(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, api.DirectoryRequest)
    hits = await services.accounts.directory(caller, body.addresses)
    policy = metadata_of(request).policy  # issue 5: accounts that do not want to be found
    hits = [h for h in hits if await policy.may_discover(caller.account_id, h.account_id)]
    return json_response(
        api.DirectoryResponse(
            [api.DirectoryEntry(str(h.address), h.account_id, list(h.devices)) for h in hits]
        )
    )


async def _devices(request: Request, services: Services) -> Response:
    device = await authenticate(request, services)
    devices = await services.accounts.devices(device.account_id)
    return json_response(
        api.DeviceList(
            [api.DeviceInfo(d.device_id, d.name, d.registration_id, d.created_at) for d in devices]
        )
    )


async def _link_code(request: Request, services: Services) -> Response:
    device = await authenticate(request, services)
    code, expires = await services.accounts.create_link_code(device)
    return json_response(api.LinkCode(code, expires))


async def _link(request: Request, services: Services) -> Response:
    body = await read_body(request, api.LinkRequest)
    account_id, device_id = await services.accounts.link_device(
        code=body.code,
        password=body.password,
        registration_id=body.registration_id,
        device_name=body.device_name,
        host=client_host(request),
    )
    return json_response(api.RegistrationResponse(account_id, device_id))


async def _remove_device(request: Request, services: Services) -> Response:
    device = await authenticate(request, services)
    text = request.path_params["device_id"]
    if not (text.isdigit() and len(text) <= 10 and int(text) >= 1):
        raise Refused(ErrorCode.INVALID_REQUEST, "device_id must be a positive integer")
    await services.accounts.remove_device(device, DeviceId(int(text)))
    return Response(status_code=204)


_AUTH_ERRORS: Final = (ErrorCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED)
_BODY_ERRORS: Final = (ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE)

ROUTES: Final[tuple[RouteSpec, ...]] = (
    RouteSpec("GET", "/health", "health", "Liveness check.", _health, response=api.Health),
    RouteSpec(
        "GET",
        "/v1/apps",
        "list_apps",
        "The app catalogue (public part).",
        _apps,
        response=api.AppList,
    ),
    RouteSpec(
        "POST",
        "/v1/verification",
        "request_verification",
        "Ask the verifier to send a code to an address.",
        _verification,
        request=api.VerificationRequest,
        status=202,
        app_key=True,
        errors=(
            *_BODY_ERRORS,
            ErrorCode.INVALID_ADDRESS,
            ErrorCode.UNKNOWN_APP,
            ErrorCode.FORBIDDEN,
            ErrorCode.WRONG_APP,
            ErrorCode.RATE_LIMITED,
        ),
    ),
    RouteSpec(
        "POST",
        "/v1/accounts",
        "register",
        "Register or re-register an address with a verification code; creates device 1.",
        _register,
        request=api.RegistrationRequest,
        response=api.RegistrationResponse,
        app_key=True,
        errors=(
            *_BODY_ERRORS,
            ErrorCode.INVALID_ADDRESS,
            ErrorCode.UNKNOWN_APP,
            ErrorCode.FORBIDDEN,
            ErrorCode.WRONG_APP,
            ErrorCode.INVALID_CODE,
            ErrorCode.RATE_LIMITED,
        ),
    ),
    RouteSpec(
        "PUT",
        "/v1/keys",
        "upload_keys",
        "Publish the calling device's keys.",
        _put_keys,
        request=api.KeyUpload,
        status=204,
        auth=True,
        errors=(
            *_AUTH_ERRORS,
            *_BODY_ERRORS,
            ErrorCode.IDENTITY_KEY_CHANGED,
            ErrorCode.KEYS_NOT_SET,
        ),
    ),
    RouteSpec(
        "GET",
        "/v1/keys/count",
        "count_keys",
        "One-time prekeys left for the calling device.",
        _key_counts,
        response=api.KeyCounts,
        auth=True,
        errors=_AUTH_ERRORS,
    ),
    RouteSpec(
        "GET",
        "/v1/keys/{account_id}/{device_id}",
        "get_prekey_bundle",
        "Take a prekey bundle of one device or of every device (`*`).",
        _get_keys,
        response=api.PreKeyBundle,
        auth=True,
        path_params=(
            ("account_id", "The account's UUID."),
            ("device_id", "A device id, or `*` for every device with keys."),
        ),
        errors=(*_AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND),
    ),
    RouteSpec(
        "POST",
        "/v1/directory",
        "lookup_directory",
        "Resolve addresses to accounts and their devices.",
        _directory,
        request=api.DirectoryRequest,
        response=api.DirectoryResponse,
        auth=True,
        errors=(*_AUTH_ERRORS, *_BODY_ERRORS),
    ),
    RouteSpec(
        "GET",
        "/v1/devices",
        "list_devices",
        "The calling account's devices.",
        _devices,
        response=api.DeviceList,
        auth=True,
        errors=_AUTH_ERRORS,
    ),
    RouteSpec(
        "POST",
        "/v1/devices/link-code",
        "create_link_code",
        "Make a single-use code (10 minutes) that links one new device (primary device only).",
        _link_code,
        response=api.LinkCode,
        auth=True,
        errors=(*_AUTH_ERRORS, ErrorCode.FORBIDDEN),
    ),
    RouteSpec(
        "POST",
        "/v1/devices/link",
        "link_device",
        "Create a linked device of the account that made the code.",
        _link,
        request=api.LinkRequest,
        response=api.RegistrationResponse,
        errors=(
            *_BODY_ERRORS,
            ErrorCode.INVALID_CODE,
            ErrorCode.TOO_MANY_DEVICES,
            ErrorCode.RATE_LIMITED,
        ),
    ),
    RouteSpec(
        "DELETE",
        "/v1/devices/{device_id}",
        "remove_device",
        "Remove a linked device (the primary removes any, a linked device itself).",
        _remove_device,
        status=204,
        auth=True,
        path_params=(("device_id", "The device to remove (not 1)."),),
        errors=(*_AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
    ),
)
"""Every HTTP route of the API (the WebSocket and /openapi.json are added by the app)."""


def routes() -> list[Route]:
    """Starlette routes for :data:`ROUTES`."""
    return starlette_routes(ROUTES)


def starlette_routes(specs: Iterable[RouteSpec]) -> list[Route]:
    """Starlette routes for ``specs``: refusals become JSON errors, bugs a logged 500."""
    return [Route(s.path, _endpoint(s), methods=[s.method], name=s.name) for s in specs]
