"""Profiles: display name and profile picture, validated and normalised by the server.

This module owns what a profile may hold and who may see it. Display names are trimmed,
must be 1..64 characters without control characters. Pictures must be PNG, JPEG, WebP or
GIF of at most 512 KiB and 4096x4096 pixels (checked from the header before decoding, so a
decompression bomb is refused without being decoded); they are decoded with Pillow, the first
frame only, scaled to fit 512x512 and re-encoded from the pixels alone (PNG when the picture
has transparency, else JPEG), so no EXIF, GPS, ICC or comment metadata survives. Anything
else is refused with ``invalid_request`` and nothing changes. A profile is visible to those
for whom the account is discoverable (its reachability setting, see
:meth:`~kurir.server.services.policy.PolicyService.may_discover`), and always to itself.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image, UnidentifiedImageError

from kurir.server.errors import Refused
from kurir.server.services.conversations import ConversationService
from kurir.server.services.policy import PolicyService
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.metadata_records import AvatarRecord
from kurir.server.types import AccountId, Clock
from kurir.wire.errors import ErrorCode
from kurir.wire.metadata_api import MAX_AVATAR_UPLOAD_BYTES

__all__ = ["AVATAR_SIZE", "Profile", "ProfileService", "normalise_avatar", "normalise_name"]

AVATAR_SIZE: Final = 512
"""Stored pictures fit in AVATAR_SIZE x AVATAR_SIZE pixels."""
MAX_INPUT_SIDE: Final = 4096
_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a caller may see of an account's profile."""

    account_id: AccountId
    display_name: str | None
    avatar: AvatarRecord | None


def _bad(field: str, why: str) -> Refused:
    return Refused(ErrorCode.INVALID_REQUEST, f"$.{field}: {why}")


def normalise_name(name: str | None) -> str | None:
    """Trim and check a display name (``None`` or blank removes it).

    Raises:
        Refused: ``invalid_request`` for control characters or more than 64 characters.
    """
    if name is None:
        return None
    text = unicodedata.normalize("NFC", name.strip())
    if not text:
        return None
    if len(text) > 64:
        raise _bad("display_name", "at most 64 characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise _bad("display_name", "control characters are not allowed")
    return text


def normalise_avatar(data: bytes) -> tuple[str, bytes]:
    """Validate and re-encode a picture; return (content type, bytes) without metadata.

    Raises:
        Refused: ``invalid_request``: too large, not an image, unsupported format, too many
            pixels, or undecodable.
    """
    if not data:
        raise _bad("image", "empty")
    if len(data) > MAX_AVATAR_UPLOAD_BYTES:
        raise _bad("image", f"larger than {MAX_AVATAR_UPLOAD_BYTES} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                if max(image.size) > MAX_INPUT_SIDE or min(image.size) < 1:
                    raise _bad("image", f"at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} pixels")
                image.seek(0)
                image.load()
                has_alpha = image.mode in ("RGBA", "LA", "PA") or (
                    image.mode == "P" and "transparency" in image.info
                )
                pixels = image.convert("RGBA" if has_alpha else "RGB")
    except Refused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bad("image", "not a PNG, JPEG, WebP or GIF image") from None
    except (OSError, ValueError, SyntaxError):
        raise _bad("image", "the image cannot be decoded") from None
    pixels.thumbnail((AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS)
    # a fresh image from the pixels alone: no EXIF, ICC, text chunks or comments carried over
    clean = Image.new(pixels.mode, pixels.size)
    clean.paste(pixels)
    out = io.BytesIO()
    if has_alpha:
        clean.save(out, format="PNG", optimize=True)
        return "image/png", out.getvalue()
    clean.save(out, format="JPEG", quality=85)
    return "image/jpeg", out.getvalue()


class ProfileService:
    """Display names and pictures.

    Args:
        store: The metadata store.
        conversations: Where the display name lives (account settings).
        policy: Who may see a profile.
        clock: Time source.
    """

    def __init__(
        self,
        store: MetadataStore,
        conversations: ConversationService,
        policy: PolicyService,
        *,
        clock: Clock,
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._policy = policy
        self._clock = clock

    async def set_name(self, account_id: AccountId, name: str | None) -> None:
        """Set (or with ``None`` remove) the display name.

        Raises:
            Refused: ``invalid_request`` for a bad name.
        """
        await self._conversations.set_display_name(account_id, normalise_name(name))

    async def set_avatar(self, account_id: AccountId, data: bytes | None) -> None:
        """Normalise and store a picture (``None`` removes it).

        Raises:
            Refused: ``invalid_request`` for a bad picture; nothing changes.
        """
        if data is None:
            await self._store.put_avatar(account_id, None)
            return
        content_type, clean = normalise_avatar(data)
        await self._store.put_avatar(
            account_id, AvatarRecord(content_type, clean, self._clock.now_ms())
        )

    async def profile(self, caller: AccountId, target: AccountId) -> Profile:
        """The target's profile as ``caller`` may see it.

        Raises:
            Refused: ``not_found`` when the target does not exist or is not visible.
        """
        if caller != target and not await self._policy.may_discover(caller, target):
            raise Refused(ErrorCode.NOT_FOUND, "no such profile")
        settings = await self._conversations.settings(target)
        return Profile(target, settings.display_name, await self._store.avatar(target))
