"""What an official hands over as evidence: the file of a message, where a forward came from."""

from __future__ import annotations

from telegram import (
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
)


def file_of(message: Message) -> tuple[str, int | None, str, str] | None:
    """(file id, size, name, media type) of the message's file, if it has one."""
    if message.photo:
        photo = message.photo[-1]  # the largest size
        return photo.file_id, photo.file_size, f"photo-{message.message_id}.jpg", "image/jpeg"
    for kind, default_type, suffix in (
        ("document", "application/octet-stream", ""),
        ("voice", "audio/ogg", ".ogg"),
        ("audio", "audio/mpeg", ".mp3"),
        ("video", "video/mp4", ".mp4"),
        ("video_note", "video/mp4", ".mp4"),
    ):
        item = getattr(message, kind)
        if item is not None:
            name = getattr(item, "file_name", None) or f"{kind}-{message.message_id}{suffix}"
            media_type = getattr(item, "mime_type", None) or default_type
            return item.file_id, item.file_size, name, media_type
    return None


def origin_of(message: Message) -> tuple[str, str] | None:
    """Who a forwarded message came from and when (it is sealed with the evidence)."""
    origin = message.forward_origin
    if origin is None:
        return None
    if isinstance(origin, MessageOriginUser):
        who = origin.sender_user.full_name
        if origin.sender_user.username:
            who += f" (@{origin.sender_user.username})"
    elif isinstance(origin, MessageOriginHiddenUser):
        who = origin.sender_user_name
    elif isinstance(origin, MessageOriginChat):
        who = origin.sender_chat.title or str(origin.sender_chat.id)
    elif isinstance(origin, MessageOriginChannel):
        who = origin.chat.title or str(origin.chat.id)
        if origin.chat.username:
            who += f" (@{origin.chat.username})"
    else:
        who = "?"
    return who, origin.date.strftime("%Y-%m-%d %H:%M UTC")
