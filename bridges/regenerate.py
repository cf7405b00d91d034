"""Regenerate: ask the agent the last turn again and show the new reply where the old one was.

Only the latest reply of a conversation with the bot can be regenerated, by its user, and only with an
agent that can be asked again (`agents.base.Regenerable`). The press waits its turn in the conversation
like a message. The new reply's messages are edits of the old reply's, in order; one longer posts the
rest anew, one shorter marks the old messages it no longer needs. The transcript entry takes the new
text, and a system line keeps the old one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from agents.base import Agent, Attachment, Button, Media, Regenerable, Turn
from bridges.budget import RateBudget, acquire_all
from bridges.catalogue import Phrasebook
from bridges.controls import Control, ControlNotices
from bridges.conversations import Conversations, TurnEnd
from bridges.notices import Notices
from bridges.quotas import spent
from bridges.replies import ReplyWriter
from bridges.split import Measure
from bridges.surface import Inbound, Surface, SurfaceError, send_notice
from bridges.turns import Place
from models import Conversation

log = logging.getLogger(__name__)

Acknowledge = Callable[[str | None], Awaitable[object]]
"""Answers the press, once: with why it does nothing, or None as the new reply starts."""


class Regenerations:
    def __init__(
        self,
        conversations: Conversations,
        writer: ReplyWriter,
        *,
        line_up: Callable[[Inbound], Place],
        agent_for: Callable[[Conversation], Agent],
        history_length: int,
        max_input_chars: int,
        pending: Callable[[str], dict[str, str]],
    ) -> None:
        """`pending` makes the pending-reply mark for what was asked (bridges/recovery.py reads it)."""
        self.conversations = conversations
        self.writer = writer
        self._line_up = line_up
        self._agent_for = agent_for
        self.history_length = history_length
        self.max_input_chars = max_input_chars
        self._pending = pending

    async def regenerate(
        self, inbound: Inbound, surface: Surface, acknowledge: Acknowledge, words: Phrasebook
    ) -> None:
        """Regenerate the reply whose message `inbound.message_id` was pressed, for `inbound`'s user (the
        bridge checked the presser is the reply's user), in its turn; said in `words`, their language."""
        say = words(ControlNotices)
        with self._line_up(inbound) as place:
            await place.turn()
            last = await self.conversations.last_reply(inbound, inbound.message_id, self.history_length)
            agent = self._agent_for(last.conversation) if last is not None else None
            if last is None or not isinstance(agent, Regenerable):
                await acknowledge(say.too_late)
                return
            conversation = last.conversation
            text = last.asked[: self.max_input_chars]
            over = await self.conversations.begin_regeneration(inbound, conversation.id, self._pending(text))
            await acknowledge(over)  # None: go ahead; else the quota reached, and nothing is asked
            if over is not None:
                return
            turn = Turn(
                text=text,
                user_id=inbound.user_id,
                display_name=inbound.display_name,
                platform=inbound.platform,
                provider_state=conversation.provider_state,
                history=last.history,
            )
            in_place = InPlace(surface, last.message_ids, say.replaced_part)
            result = await self.writer.write(
                conversation.id,
                agent,
                inbound,
                in_place,
                agent.regenerate(turn),
                started=time.monotonic(),
                words=words,
            )
            await in_place.retire_the_rest()
            if result.text:
                await self.conversations.replace_reply(last.entry_id, result.text, result.message_ids)
            if result.cut:
                await send_notice(surface, words(Notices).reply_cut)
            await self.conversations.finish_turn(
                TurnEnd(
                    conversation.id, result.provider_state, ended=False, spent=spent(inbound, turn, result)
                )
            )


class InPlace:
    """A surface whose new messages are edits of an earlier reply's, in order, while there are any."""

    def __init__(self, surface: Surface, message_ids: Sequence[str], replaced: str) -> None:
        self.inner = surface
        self._old = list(message_ids)
        self._replaced = replaced
        """What an old message the new reply did not need says, in the user's language."""

    @property
    def max_length(self) -> int:
        return self.inner.max_length

    @property
    def measure(self) -> Measure:
        return self.inner.measure

    @property
    def edit_interval(self) -> float:
        return self.inner.edit_interval

    @property
    def budgets(self) -> Sequence[RateBudget]:
        """A "new" message is an edit while old ones are left, and pays as one."""
        return self.inner.edit_budgets if self._old else self.inner.budgets

    @property
    def edit_budgets(self) -> Sequence[RateBudget]:
        return self.inner.edit_budgets

    @property
    def typing_budgets(self) -> Sequence[RateBudget]:
        return self.inner.typing_budgets

    @property
    def control_buttons(self) -> frozenset[Control]:
        return self.inner.control_buttons

    @property
    def max_upload(self) -> int:
        return self.inner.max_upload

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        if not self._old:
            return await self.inner.send(text, buttons)
        message_id = self._old.pop(0)  # if it cannot be edited (deleted?), a retry posts anew
        await self.inner.edit(message_id, text, buttons)
        return message_id

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        await self.inner.edit(message_id, text, buttons, final=final)

    async def send_media(self, media: Media) -> str:
        return await self.inner.send_media(media)

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        return await self.inner.send_file(file, caption)

    async def typing(self) -> None:
        await self.inner.typing()

    async def final_id(self, message_id: str) -> str:
        return await self.inner.final_id(message_id)

    async def retire_the_rest(self) -> None:
        """The old reply's messages the new one did not need say so (and lose their buttons)."""
        for message_id in self._old:
            await acquire_all(self.inner.edit_budgets)
            try:
                await self.inner.edit(message_id, self._replaced, final=True)
            except SurfaceError as exc:
                log.warning("could not mark a replaced message %s: %s", message_id, exc)
        self._old.clear()
