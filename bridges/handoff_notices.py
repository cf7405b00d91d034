"""What the handoff says to the user: a moderator joined, wrote, or handed them back to the assistant."""

from __future__ import annotations

from bridges.catalogue import Strings


class UserNotices(Strings, key="handoff.user"):
    """What the handoff says to the user."""

    claimed = "{name} (a moderator) has joined the conversation."
    resolved = "The moderator has closed this conversation. The assistant is back; ask it anything."
    returned = "The moderator handed you back to the assistant. Ask it anything."
    expired = "No moderator was available in time, so the assistant is back. Please ask again."
    from_moderator = "{name} (moderator): {text}"
    from_staff = "{name}: {text}"
