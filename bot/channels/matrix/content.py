"""What a Matrix event says, as the core understands it: text, thread, attachments.

Pure reading of event content: nothing here talks to the network. Malformed content
(a relation that is not an object, a size that is not a number) reads as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nio import RoomEncryptedMedia, RoomMessageMedia

MEDIA_TYPES = frozenset({"m.image", "m.file", "m.audio", "m.video"})
MAX_TEXT = 16_000  # longer messages are cut here; the core refuses overlong answers itself


def content_of(event: Any) -> Mapping[str, Any]:
    source = getattr(event, "source", None)
    if not isinstance(source, Mapping):
        return {}
    content = source.get("content")
    return content if isinstance(content, Mapping) else {}


def thread_of(event: Any) -> str | None:
    """The root event id of the thread an event was written in, or None."""
    relation = content_of(event).get("m.relates_to")
    if not isinstance(relation, Mapping) or relation.get("rel_type") != "m.thread":
        return None
    root = relation.get("event_id")
    return root if isinstance(root, str) and root.startswith("$") else None


def declared_size(event: Any) -> int | None:
    info = content_of(event).get("info")
    if not isinstance(info, Mapping):
        return None
    size = info.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def is_media(event: Any) -> bool:
    return isinstance(event, RoomEncryptedMedia | RoomMessageMedia)


def media_type(event: Any) -> str:
    mimetype = getattr(event, "mimetype", None)
    if isinstance(mimetype, str) and mimetype:
        return mimetype
    info = content_of(event).get("info")
    if isinstance(info, Mapping) and isinstance(info.get("mimetype"), str):
        return str(info["mimetype"])
    return "application/octet-stream"


def file_name(event: Any) -> str:
    content = content_of(event)
    for key in ("filename", "body"):
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return "file"


def text_content(body: str, thread_root: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if thread_root is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": thread_root},
        }
    return content


def file_content(
    name: str, media: str, size: int, url: str, keys: Mapping[str, Any]
) -> dict[str, Any]:
    msgtype = "m.image" if media.startswith("image/") else "m.file"
    return {
        "msgtype": msgtype,
        "body": name,
        "filename": name,
        "info": {"mimetype": media, "size": size},
        "file": {**keys, "url": url},
    }
