"""Voiceflow-style rich items (text, choice, visual, cardV2, carousel, end, handoff) as neutral events.

Voiceflow traces and Convocore `ui_engine` snapshot items share these shapes, so both backends map
them here. Unknown or malformed items are logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from typing import Any

from agents.base import AgentEvent, Button, Buttons, HandoffRequested, Media, Message, SessionEnded

log = logging.getLogger(__name__)

IGNORED = frozenset({"path", "debug", "flow", "block", "log", "no-reply", "entity-filling", "channel-action"})
_SSML = re.compile(r"<[^>]+>")


def item_events(kind: str, payload: Any, *, handoff_actions: Collection[str] = ()) -> list[AgentEvent]:
    """Events for one item; `handoff_actions` are custom action names that mean "get a human"."""
    if kind in IGNORED:
        return []
    if kind == "live-agent-handoff" or kind in handoff_actions:
        reason = (
            _text(payload, "message") or _text(payload, "reason") or f"the agent asked for a human ({kind})"
        )
        return [HandoffRequested(reason)]
    if kind == "end":
        return [SessionEnded("the agent ended the conversation")]
    if not isinstance(payload, Mapping):
        log.warning("skipping %r item with a %s payload", kind, type(payload).__name__)
        return []
    match kind:
        case "text":
            text = _text(payload, "message") or _slate_text(payload.get("slate"))
            return [Message(text)] if text.strip() else []
        case "speak":
            text = _SSML.sub("", _text(payload, "message"))
            return [Message(text)] if text.strip() else []
        case "choice":
            buttons = buttons_from(payload.get("buttons"))
            return [Buttons(buttons)] if buttons else []
        case "visual":
            url = _text(payload, "image")
            return [Media(url, "image")] if url else []
        case "cardV2" | "card":
            return [_card(payload)]
        case "carousel":
            cards = payload.get("cards")
            return (
                [_card(card) for card in cards if isinstance(card, Mapping)]
                if isinstance(cards, list)
                else []
            )
    log.info("skipping unsupported %r item", kind)
    return []


def buttons_from(raw: Any) -> tuple[Button, ...]:
    """Buttons whose payload is the provider's own `request` object, to be sent back unchanged."""
    if not isinstance(raw, list):
        return ()
    buttons = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        request = _as_map(item.get("request"))
        label = _text(item, "name") or _text(item, "label") or _text(_as_map(request.get("payload")), "label")
        if not label:
            continue
        buttons.append(Button(label=label, payload=dict(request), url=_open_url(request)))
    return tuple(buttons)


def _card(card: Mapping[str, Any]) -> Message:
    title = _text(card, "title")
    description = card.get("description")
    body = _text(description, "text") if isinstance(description, Mapping) else str(description or "")
    text = "\n".join(part for part in (f"**{title}**" if title else "", body) if part)
    image = _text(card, "imageUrl")
    return Message(
        text, buttons=buttons_from(card.get("buttons")), media=(Media(image, "image"),) if image else ()
    )


def _open_url(request: Mapping[str, Any]) -> str | None:
    actions = _as_map(request.get("payload")).get("actions")
    for action in actions if isinstance(actions, list) else ():
        if isinstance(action, Mapping) and action.get("type") == "open_url":
            url = _text(_as_map(action.get("payload")), "url")
            if url:
                return url
    return None


def _slate_text(slate: Any) -> str:
    """Voiceflow's rich-text slate: {content: [{children: [{text}]}]}."""
    if not isinstance(slate, Mapping) or not isinstance(slate.get("content"), list):
        return ""
    lines = []
    for block in slate["content"]:
        children = block.get("children") if isinstance(block, Mapping) else None
        if isinstance(children, list):
            lines.append("".join(_text(child, "text") for child in children if isinstance(child, Mapping)))
    return "\n".join(lines)


def _as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(mapping: Any, key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    return value if isinstance(value, str) else ""
