"""The HTTP routes of the metadata features (docs/protocol.md §11), declared like
:data:`kurir.server.http.ROUTES`.

This module owns mapping settings, blocks, message requests, conversations, contacts,
profiles, push subscriptions and the transparency report to their services. The routes are
:class:`~kurir.server.http.RouteSpec` values, so the OpenAPI document and the error handling
are those of every other route. It knows no policy itself.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kurir.server.context import Services
from kurir.server.errors import Refused
from kurir.server.http import (
    Handler,
    RouteSpec,
    authenticate,
    json_response,
    read_body,
    starlette_routes,
)
from kurir.server.metadata_app import MetadataServices, metadata_of
from kurir.server.storage.metadata_records import (
    SOUNDS,
    AccountSettings,
    ConversationRecord,
    PushSubscription,
)
from kurir.server.types import AccountId
from kurir.wire import metadata_api as m
from kurir.wire.errors import ErrorCode

__all__ = ["METADATA_ROUTES", "metadata_routes"]


async def _address_of(md: MetadataServices, account_id: AccountId) -> str | None:
    address = await md.policy.address_of(account_id)
    return None if address is None else str(address)


async def _resolve(services: Services, md: MetadataServices, peer: m.PeerRef) -> AccountId | None:
    """The account a PeerRef names, or ``None`` if it names no registered account."""
    if peer.account_id is not None and peer.address is None:
        return AccountId(peer.account_id)
    if peer.address is not None and peer.account_id is None:
        return await md.policy.resolve(services.accounts.parse(peer.address))
    raise Refused(ErrorCode.INVALID_REQUEST, "give exactly one of $.address and $.account_id")


def _path_account(request: Request) -> AccountId:
    try:
        return AccountId(UUID(request.path_params["account_id"]))
    except ValueError:
        raise Refused(ErrorCode.INVALID_REQUEST, "account_id must be a UUID") from None


def _settings_body(s: AccountSettings) -> m.SettingsBody:
    return m.SettingsBody(
        s.reachability.value, s.default_sound, s.default_muted, s.unarchive_on_message, list(SOUNDS)
    )


async def _conversation_info(md: MetadataServices, c: ConversationRecord) -> m.ConversationInfo:
    return m.ConversationInfo(
        account_id=c.peer,
        address=await _address_of(md, c.peer),
        state=c.state.value,
        archived=c.archived,
        muted=c.muted,
        sound=c.sound,
        sent=c.sent,
        received=c.received,
        created=c.created_at,
        last_activity=c.last_activity,
    )


# -- handlers ---------------------------------------------------------------------------


async def _get_settings(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    md = metadata_of(request)
    return json_response(_settings_body(await md.conversations.settings(caller.account_id)))


async def _put_settings(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.SettingsUpdate)
    md = metadata_of(request)
    updated = await md.conversations.update_settings(
        caller.account_id,
        reachability=body.reachability,
        default_sound=body.default_sound,
        default_muted=body.default_muted,
        unarchive_on_message=body.unarchive_on_message,
        by=caller.device_id,
    )
    return json_response(_settings_body(updated))


async def _get_blocks(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    md = metadata_of(request)
    blocks = await md.policy.blocks(caller.account_id)
    return json_response(
        m.BlockList(
            [
                m.BlockEntry(b.blocked, await _address_of(md, b.blocked), b.created_at)
                for b in blocks
            ]
        )
    )


async def _block(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.PeerRef)
    md = metadata_of(request)
    target = await _resolve(services, md, body)
    # an unregistered address is accepted and ignored: the answer must not reveal accounts
    if target is not None and await md.policy.address_of(target) is not None:
        await md.policy.block(caller.account_id, target)
    return Response(status_code=204)


async def _unblock(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.PeerRef)
    md = metadata_of(request)
    target = await _resolve(services, md, body)
    if target is not None:
        await md.policy.unblock(caller.account_id, target)
    return Response(status_code=204)


async def _requests(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    md = metadata_of(request)
    rows = await md.policy.requests(caller.account_id)
    return json_response(
        m.RequestList(
            [
                m.RequestEntry(
                    r.peer, await _address_of(md, r.peer), r.received, r.created_at, r.last_activity
                )
                for r in rows
            ]
        )
    )


async def _answer(request: Request, services: Services, *, accept: bool) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.PeerRef)
    md = metadata_of(request)
    peer = await _resolve(services, md, body)
    if peer is None:
        raise Refused(ErrorCode.NOT_FOUND, "no message request from that account")
    await md.policy.answer_request(caller.account_id, peer, accept=accept)
    return Response(status_code=204)


async def _accept(request: Request, services: Services) -> Response:
    return await _answer(request, services, accept=True)


async def _decline(request: Request, services: Services) -> Response:
    return await _answer(request, services, accept=False)


async def _conversations(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    md = metadata_of(request)
    rows = await md.conversations.conversations(caller.account_id)
    return json_response(m.ConversationList([await _conversation_info(md, c) for c in rows]))


async def _put_conversation(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    peer = _path_account(request)
    body = await read_body(request, m.ConversationFlags)
    md = metadata_of(request)
    row = await md.conversations.set_flags(
        caller.account_id,
        peer,
        archived=body.archived,
        muted=body.muted,
        sound=body.sound,
        by=caller.device_id,
    )
    return json_response(await _conversation_info(md, row))


async def _upload_contacts(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.ContactUpload)
    md = metadata_of(request)
    stored, hits = await md.contacts.upload(caller.account_id, body.entries, body.region)
    return json_response(
        m.ContactUploadResult(
            stored, [m.ContactHit(h.entry, str(h.address), h.account_id) for h in hits]
        )
    )


async def _get_contacts(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    md = metadata_of(request)
    return json_response(m.ContactList(await md.contacts.contacts(caller.account_id)))


async def _get_profile(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    target = _path_account(request)
    md = metadata_of(request)
    profile = await md.profiles.profile(caller.account_id, target)
    avatar = profile.avatar
    return json_response(
        m.ProfileInfo(
            profile.account_id,
            profile.display_name,
            None if avatar is None else avatar.data,
            None if avatar is None else avatar.content_type,
        )
    )


async def _put_profile(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.ProfileUpdate)
    await metadata_of(request).profiles.set_name(caller.account_id, body.display_name)
    return Response(status_code=204)


async def _put_avatar(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.AvatarUpload)
    await metadata_of(request).profiles.set_avatar(caller.account_id, body.image)
    return Response(status_code=204)


async def _delete_avatar(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    await metadata_of(request).profiles.set_avatar(caller.account_id, None)
    return Response(status_code=204)


async def _put_push(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, m.PushSubscriptionBody)
    if not body.endpoint.startswith("https://"):
        raise Refused(ErrorCode.INVALID_REQUEST, "$.endpoint: must be an https:// URL")
    md = metadata_of(request)
    await md.store.put_push(
        PushSubscription(
            caller.account_id,
            caller.device_id,
            body.endpoint,
            body.p256dh,
            body.auth,
            services.clock.now_ms(),
        )
    )
    return Response(status_code=204)


async def _delete_push(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    await metadata_of(request).store.delete_push(caller.account_id, caller.device_id)
    return Response(status_code=204)


async def _report(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    generated, tables = await metadata_of(request).report.report(caller.account_id)
    return json_response(m.Report(generated, tables))


_AUTH: Final = (ErrorCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED)
_BODY: Final = (*_AUTH, ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE)
_PEER: Final = (*_BODY, ErrorCode.INVALID_ADDRESS, ErrorCode.UNKNOWN_APP)
_ACCOUNT: Final = (("account_id", "The other account's UUID."),)


def _spec(
    method: str,
    path: str,
    name: str,
    summary: str,
    handler: Handler,
    *,
    request: type[msgspec.Struct] | None = None,
    response: type[msgspec.Struct] | None = None,
    status: int = 200,
    path_params: tuple[tuple[str, str], ...] = (),
    errors: tuple[ErrorCode, ...] = (),
) -> RouteSpec:
    return RouteSpec(
        method,
        path,
        name,
        summary,
        handler,
        request=request,
        response=response,
        status=status,
        auth=True,
        path_params=path_params,
        errors=errors,
    )


METADATA_ROUTES: Final[tuple[RouteSpec, ...]] = (
    _spec(
        "GET",
        "/v1/settings",
        "get_settings",
        "The caller's settings.",
        _get_settings,
        response=m.SettingsBody,
        errors=_AUTH,
    ),
    _spec(
        "PUT",
        "/v1/settings",
        "put_settings",
        "Change reachability, default sound and mute, unarchive-on-message.",
        _put_settings,
        request=m.SettingsUpdate,
        response=m.SettingsBody,
        errors=_BODY,
    ),
    _spec(
        "GET",
        "/v1/blocks",
        "list_blocks",
        "The accounts the caller blocked.",
        _get_blocks,
        response=m.BlockList,
        errors=_AUTH,
    ),
    _spec(
        "POST",
        "/v1/blocks",
        "block",
        "Block an account (of any app).",
        _block,
        request=m.PeerRef,
        status=204,
        errors=_PEER,
    ),
    _spec(
        "POST",
        "/v1/blocks/remove",
        "unblock",
        "Lift a block.",
        _unblock,
        request=m.PeerRef,
        status=204,
        errors=_PEER,
    ),
    _spec(
        "GET",
        "/v1/requests",
        "list_requests",
        "Pending message requests.",
        _requests,
        response=m.RequestList,
        errors=_AUTH,
    ),
    _spec(
        "POST",
        "/v1/requests/accept",
        "accept_request",
        "Accept a message request.",
        _accept,
        request=m.PeerRef,
        status=204,
        errors=(*_PEER, ErrorCode.NOT_FOUND),
    ),
    _spec(
        "POST",
        "/v1/requests/decline",
        "decline_request",
        "Decline a message request: later messages from that account are dropped.",
        _decline,
        request=m.PeerRef,
        status=204,
        errors=(*_PEER, ErrorCode.NOT_FOUND),
    ),
    _spec(
        "GET",
        "/v1/conversations",
        "list_conversations",
        "The caller's conversations: state, archive/mute/sound flags, counts.",
        _conversations,
        response=m.ConversationList,
        errors=_AUTH,
    ),
    _spec(
        "PUT",
        "/v1/conversations/{account_id}",
        "put_conversation",
        "Archive, mute or set the sound of a conversation (synced to every device).",
        _put_conversation,
        request=m.ConversationFlags,
        response=m.ConversationInfo,
        path_params=_ACCOUNT,
        errors=(*_BODY, ErrorCode.NOT_FOUND),
    ),
    _spec(
        "POST",
        "/v1/contacts",
        "upload_contacts",
        "Upload the address book; answers which entries are registered and reachable.",
        _upload_contacts,
        request=m.ContactUpload,
        response=m.ContactUploadResult,
        errors=_BODY,
    ),
    _spec(
        "GET",
        "/v1/contacts",
        "list_contacts",
        "The stored address book.",
        _get_contacts,
        response=m.ContactList,
        errors=_AUTH,
    ),
    _spec(
        "GET",
        "/v1/profile/{account_id}",
        "get_profile",
        "A profile, if its owner's reachability lets the caller see it.",
        _get_profile,
        response=m.ProfileInfo,
        path_params=_ACCOUNT,
        errors=(*_AUTH, ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND),
    ),
    _spec(
        "PUT",
        "/v1/profile",
        "put_profile",
        "Set or remove the display name.",
        _put_profile,
        request=m.ProfileUpdate,
        status=204,
        errors=_BODY,
    ),
    _spec(
        "PUT",
        "/v1/profile/avatar",
        "put_avatar",
        "Set the profile picture (validated, re-encoded, metadata stripped).",
        _put_avatar,
        request=m.AvatarUpload,
        status=204,
        errors=_BODY,
    ),
    _spec(
        "DELETE",
        "/v1/profile/avatar",
        "delete_avatar",
        "Remove the profile picture.",
        _delete_avatar,
        status=204,
        errors=_AUTH,
    ),
    _spec(
        "PUT",
        "/v1/push",
        "put_push",
        "Register the calling device's Web Push subscription.",
        _put_push,
        request=m.PushSubscriptionBody,
        status=204,
        errors=_BODY,
    ),
    _spec(
        "DELETE",
        "/v1/push",
        "delete_push",
        "Forget the calling device's push subscription.",
        _delete_push,
        status=204,
        errors=_AUTH,
    ),
    _spec(
        "GET",
        "/v1/report",
        "transparency_report",
        "Every stored item about the caller (transparency report).",
        _report,
        response=m.Report,
        errors=_AUTH,
    ),
)
"""Every metadata route."""


def metadata_routes() -> list[Route]:
    """Starlette routes for :data:`METADATA_ROUTES`."""
    return starlette_routes(METADATA_ROUTES)
