"""The fake Bot API itself answers like Telegram: flood control, formatting errors, edits, drafts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fakes.telegram import FakeTelegram, Limit, Limits


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeTelegram, httpx.AsyncClient]]:
    fake = FakeTelegram(limits=Limits(per_chat=Limit(100.0, 1.0, 100.0)))
    async with fake.running() as base_url, httpx.AsyncClient(base_url=f"{base_url}{fake.token}/") as client:
        yield fake, client


async def call(client: httpx.AsyncClient, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    response = await client.post(method, data=form)
    return response.status_code, response.json()


async def test_group_flood_control_answers_429_with_retry_after(
    api: tuple[FakeTelegram, httpx.AsyncClient],
) -> None:
    fake, client = api
    group = fake.group("Busy")
    statuses = [(await call(client, "sendMessage", chat_id=group.id, text=f"m{n}"))[0] for n in range(21)]
    assert statuses == [200] * 20 + [429]
    status, body = await call(client, "sendMessage", chat_id=group.id, text="again")
    assert status == 429 and body["error_code"] == 429 and body["parameters"]["retry_after"] >= 1
    assert fake.flood.refused["group"] == 2 and len(fake.refusals(429)) == 2


async def test_a_group_gets_20_messages_in_any_minute_never_more() -> None:
    """The documented 20 a minute is a hard count: 20 spread over 59 seconds leave no room for a 21st
    until the first of them is a minute old (a bucket refilling as it goes would let more through)."""
    now = [0.0]
    fake = FakeTelegram(limits=Limits(per_chat=Limit(100.0, 1.0, 100.0)), clock=lambda: now[0])
    group = fake.group("Busy")
    async with fake.running() as base_url, httpx.AsyncClient(base_url=f"{base_url}{fake.token}/") as client:
        for n in range(20):
            now[0] = n * 59 / 19
            assert (await call(client, "sendMessage", chat_id=group.id, text=f"m{n}"))[0] == 200
        now[0] = 59.5
        status, body = await call(client, "sendMessage", chat_id=group.id, text="too soon")
        assert status == 429 and body["parameters"]["retry_after"] == 1
        now[0] = 60.0
        assert (await call(client, "sendMessage", chat_id=group.id, text="a minute on"))[0] == 200
        status, body = await call(client, "sendMessage", chat_id=group.id, text="and one more")
        assert status == 429 and body["parameters"]["retry_after"] == 4  # the second is a minute old at 63.1
    assert fake.flood.refused["group"] == 2


async def test_identical_edit_is_not_modified(api: tuple[FakeTelegram, httpx.AsyncClient]) -> None:
    fake, client = api
    chat = fake.private_chat(fake.user("Kim"))
    _, sent = await call(client, "sendMessage", chat_id=chat.id, text="same")
    message_id = sent["result"]["message_id"]
    assert (await call(client, "editMessageText", chat_id=chat.id, message_id=message_id, text="new"))[
        0
    ] == 200
    status, body = await call(client, "editMessageText", chat_id=chat.id, message_id=message_id, text="new")
    assert status == 400 and body["description"].startswith("Bad Request: message is not modified")
    assert fake.not_modified == 1 and fake.bot_messages(chat)[0].history == ["same", "new"]


@pytest.mark.parametrize(
    ("parse_mode", "text", "visible"),
    [
        ("HTML", '<b>bold</b> &lt;tag&gt; <a href="https://x.example">x</a>', "bold <tag> x"),
        ("HTML", "<b>unclosed", None),
        ("HTML", "<div>nope</div>", None),
        ("HTML", "a < b", None),
        ("MarkdownV2", "*bold* and \\. [x](https://x.example)", "bold and . x"),
        ("MarkdownV2", "Version 1.2", None),
        ("MarkdownV2", "*unclosed", None),
    ],
)
async def test_formatting_is_parsed_or_refused_as_telegram_does(
    api: tuple[FakeTelegram, httpx.AsyncClient], parse_mode: str, text: str, visible: str | None
) -> None:
    fake, client = api
    chat = fake.private_chat(fake.user("Lee"))
    status, body = await call(client, "sendMessage", chat_id=chat.id, text=text, parse_mode=parse_mode)
    if visible is None:
        assert status == 400 and "can't parse entities" in body["description"]
    else:
        assert status == 200 and body["result"]["text"] == visible


async def test_limits_on_entities_callback_data_drafts_and_tokens(
    api: tuple[FakeTelegram, httpx.AsyncClient],
) -> None:
    fake, client = api
    chat, group = fake.private_chat(fake.user("Max")), fake.group("G")
    beyond = [{"type": "bold", "offset": 2, "length": 5}]
    assert (await call(client, "sendMessage", chat_id=chat.id, text="abc", entities=beyond))[0] == 400
    keyboard = {"inline_keyboard": [[{"text": "x", "callback_data": "x" * 65}]]}
    status, body = await call(client, "sendMessage", chat_id=chat.id, text="hi", reply_markup=keyboard)
    assert status == 400 and "BUTTON_DATA_INVALID" in body["description"]
    assert (await call(client, "sendMessageDraft", chat_id=chat.id, draft_id=7, text="typing…"))[0] == 200
    assert (await call(client, "sendMessageDraft", chat_id=group.id, draft_id=7, text="no"))[0] == 400
    assert fake.drafts_in(chat)[0].history == ["typing…"]
    async with httpx.AsyncClient(base_url=str(client.base_url).replace(fake.token, "1:wrong")) as stranger:
        assert (await call(stranger, "getMe"))[0] == 401


async def test_get_updates_sends_only_the_kinds_asked_for(
    api: tuple[FakeTelegram, httpx.AsyncClient],
) -> None:
    """A user blocking the bot is a my_chat_member update: sent by default, dropped once allowed_updates
    leaves it out (and the choice holds for later calls), as Telegram does."""
    fake, client = api
    uma = fake.user("Uma")
    chat = fake.private_chat(uma)
    fake.say(chat, uma, "hi")
    fake.block_bot(uma)
    _, body = await call(client, "getUpdates")
    assert [next(k for k in u if k != "update_id") for u in body["result"]] == ["message", "my_chat_member"]
    change = body["result"][1]["my_chat_member"]
    assert change["chat"]["type"] == "private" and change["new_chat_member"]["status"] == "kicked"
    assert (await call(client, "sendMessage", chat_id=chat.id, text="still there?"))[0] == 403

    fake.say(chat, uma, "again")
    fake.block_bot(uma)
    _, body = await call(
        client, "getUpdates", offset=body["result"][-1]["update_id"] + 1, allowed_updates=["message"]
    )
    assert [u["message"]["text"] for u in body["result"]] == ["again"]
    fake.block_bot(uma)
    _, later = await call(client, "getUpdates", offset=body["result"][-1]["update_id"] + 1)
    assert later["result"] == []
