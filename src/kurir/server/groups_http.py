"""The HTTP routes of groups (``/v1/groups``), declared like :data:`kurir.server.http.ROUTES`.

This module owns mapping the group routes (paths, bodies, statuses) to
:class:`~kurir.server.services.groups.GroupService`. The routes are
:class:`~kurir.server.http.RouteSpec` values, so the OpenAPI document and the error handling
are the same as for every other route. It knows no group rules itself.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kurir.server.context import Services
from kurir.server.errors import Refused
from kurir.server.http import RouteSpec, authenticate, json_response, read_body, starlette_routes
from kurir.server.services.groups import GroupService
from kurir.server.storage.groups import GroupId, GroupRecord, MemberSettings
from kurir.server.types import AccountId
from kurir.wire import group_api
from kurir.wire.errors import ErrorCode

__all__ = ["GROUP_ROUTES", "group_routes"]


def _groups(services: Services) -> GroupService:
    groups: GroupService | None = getattr(services, "groups", None)
    if groups is None:
        raise Refused(ErrorCode.NOT_FOUND, "this server's storage engine has no groups")
    return groups


def _uuid(request: Request, name: str) -> UUID:
    try:
        return UUID(request.path_params[name])
    except ValueError:
        raise Refused(ErrorCode.INVALID_REQUEST, f"{name} must be a UUID") from None


def _info(group: GroupRecord, caller: AccountId) -> group_api.GroupInfo:
    me = group.member(caller)
    settings = me.settings if me is not None else MemberSettings()
    return group_api.GroupInfo(
        group_id=group.group_id,
        name=group.name,
        avatar=group.avatar,
        revision=group.revision,
        created=group.created_at,
        updated=group.updated_at,
        members=[
            group_api.GroupMemberInfo(
                m.account_id,
                str(m.address),
                m.role.value,
                m.joined_at,
                list(m.devices),
                list(m.registrations),
            )
            for m in group.members
        ],
        settings=group_api.GroupSettings(settings.archived, settings.muted_until, settings.sound),
    )


async def _create(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    body = await read_body(request, group_api.CreateGroupRequest)
    group = await _groups(services).create(
        caller,
        name=body.name,
        avatar=body.avatar,
        members=[AccountId(m) for m in body.members],
    )
    return json_response(_info(group, caller.account_id))


async def _list(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    groups = await _groups(services).list(caller)
    return json_response(group_api.GroupList([_info(g, caller.account_id) for g in groups]))


async def _get(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    group = await _groups(services).get(caller, group_id)
    return json_response(_info(group, caller.account_id))


async def _add(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    body = await read_body(request, group_api.AddMembersRequest)
    group = await _groups(services).add(caller, group_id, [AccountId(m) for m in body.members])
    return json_response(_info(group, caller.account_id))


async def _remove(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    target = AccountId(_uuid(request, "account_id"))
    if target == caller.account_id:
        raise Refused(ErrorCode.INVALID_REQUEST, "use POST /v1/groups/{group_id}/leave")
    group = await _groups(services).remove(caller, group_id, target)
    if group is None:  # unreachable: the caller is still a member
        raise Refused(ErrorCode.NOT_FOUND, "no such group")
    return json_response(_info(group, caller.account_id))


async def _leave(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    await _groups(services).remove(caller, group_id, caller.account_id)
    return Response(status_code=204)


async def _promote(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    body = await read_body(request, group_api.PromoteRequest)
    group = await _groups(services).promote(caller, group_id, AccountId(body.account_id))
    return json_response(_info(group, caller.account_id))


async def _settings(request: Request, services: Services) -> Response:
    caller = await authenticate(request, services)
    group_id = GroupId(_uuid(request, "group_id"))
    body = await read_body(request, group_api.GroupSettings)
    settings = MemberSettings(body.archived, body.muted_until, body.sound)
    await _groups(services).update_settings(caller, group_id, settings)
    return Response(status_code=204)


_AUTH: Final = (ErrorCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED)
_BODY: Final = (ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE)
_GROUP: Final = ("group_id", "The group's UUID.")

GROUP_ROUTES: Final[tuple[RouteSpec, ...]] = (
    RouteSpec(
        "POST",
        "/v1/groups",
        "create_group",
        "Create a group; the caller becomes its admin.",
        _create,
        request=group_api.CreateGroupRequest,
        response=group_api.GroupInfo,
        auth=True,
        errors=(
            *_AUTH,
            *_BODY,
            ErrorCode.UNKNOWN_ACCOUNT,
            ErrorCode.GROUP_FULL,
            ErrorCode.FORBIDDEN,
        ),
    ),
    RouteSpec(
        "GET",
        "/v1/groups",
        "list_groups",
        "The caller's groups.",
        _list,
        response=group_api.GroupList,
        auth=True,
        errors=_AUTH,
    ),
    RouteSpec(
        "GET",
        "/v1/groups/{group_id}",
        "get_group",
        "One group of the caller.",
        _get,
        response=group_api.GroupInfo,
        auth=True,
        path_params=(_GROUP,),
        errors=(*_AUTH, ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND),
    ),
    RouteSpec(
        "POST",
        "/v1/groups/{group_id}/members",
        "add_group_members",
        "Add members (admins only).",
        _add,
        request=group_api.AddMembersRequest,
        response=group_api.GroupInfo,
        auth=True,
        path_params=(_GROUP,),
        errors=(
            *_AUTH,
            *_BODY,
            ErrorCode.NOT_FOUND,
            ErrorCode.FORBIDDEN,
            ErrorCode.UNKNOWN_ACCOUNT,
            ErrorCode.GROUP_FULL,
        ),
    ),
    RouteSpec(
        "DELETE",
        "/v1/groups/{group_id}/members/{account_id}",
        "remove_group_member",
        "Remove a member (admins only).",
        _remove,
        response=group_api.GroupInfo,
        auth=True,
        path_params=(_GROUP, ("account_id", "The member's account UUID.")),
        errors=(
            *_AUTH,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.NOT_FOUND,
            ErrorCode.FORBIDDEN,
            ErrorCode.UNKNOWN_ACCOUNT,
        ),
    ),
    RouteSpec(
        "POST",
        "/v1/groups/{group_id}/leave",
        "leave_group",
        "Leave a group (the last admin hands the role to the longest-standing member).",
        _leave,
        status=204,
        auth=True,
        path_params=(_GROUP,),
        errors=(*_AUTH, ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND),
    ),
    RouteSpec(
        "POST",
        "/v1/groups/{group_id}/admins",
        "promote_group_member",
        "Make a member an admin (admins only).",
        _promote,
        request=group_api.PromoteRequest,
        response=group_api.GroupInfo,
        auth=True,
        path_params=(_GROUP,),
        errors=(
            *_AUTH,
            *_BODY,
            ErrorCode.NOT_FOUND,
            ErrorCode.FORBIDDEN,
            ErrorCode.UNKNOWN_ACCOUNT,
        ),
    ),
    RouteSpec(
        "PUT",
        "/v1/groups/{group_id}/settings",
        "update_group_settings",
        "Replace the caller's own archive / mute / sound flags for a group.",
        _settings,
        request=group_api.GroupSettings,
        status=204,
        auth=True,
        path_params=(_GROUP,),
        errors=(*_AUTH, *_BODY, ErrorCode.NOT_FOUND),
    ),
)
"""Every group route."""


def group_routes() -> list[Route]:
    """Starlette routes for :data:`GROUP_ROUTES`."""
    return starlette_routes(GROUP_ROUTES)
