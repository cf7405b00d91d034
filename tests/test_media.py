"""Media end to end: files sent on Discord and Telegram reach a vision model through the loopback CDN
and getFile, voice notes are transcribed by a loopback transcription server, and whatever an agent
cannot take is told to the user once while the text still goes through."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pydantic import HttpUrl, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Attachment, MediaSupport
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.attachments import Media, MediaNotices
from bridges.catalogue import Catalogue
from bridges.discord.bridge import DiscordBridge
from bridges.discord.config import DiscordConfig
from bridges.handoff_files import FileNotices
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from bridges.transcribe import Transcriber
from fakes.discord import FakeDiscord
from fakes.openai import FakeOpenAI
from fakes.telegram.harness import running
from fakes.transcription import FakeTranscription
from models import Role, TranscriptEntry
from settings import TranscriptionSettings
from tests import test_handoff_e2e as e2e
from tests.test_handoff_e2e import App, convocore_user_asks_for_a_human, discord_texts

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
VOICE = b"OggS" + bytes(range(200))
OVER_TELEGRAM = 20 * 1024 * 1024 + 1
"""One byte over the 20 MB the Bot API lets a bot download (getFile: "file is too big")."""
platforms, convocore_app = e2e.platforms, e2e.convocore_app
"""The cross-platform world of the handoff tests: both fakes, both desks, one Relay."""


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def vision(http: httpx.AsyncClient) -> AsyncIterator[tuple[FakeOpenAI, OpenAICompatAgent]]:
    async with FakeOpenAI(api_key=None) as provider:
        settings = OpenAICompatSettings(base_url=provider.url, model=provider.model, max_images=2)
        yield provider, OpenAICompatAgent("gpt", settings, http)


@pytest.fixture
async def whisper(http: httpx.AsyncClient) -> AsyncIterator[tuple[FakeTranscription, Media]]:
    async with FakeTranscription(api_key="whisper-key") as fake:
        settings = TranscriptionSettings(
            url=HttpUrl(fake.url), api_key=SecretStr("whisper-key"), timeout_seconds=2, max_seconds=60
        )
        yield fake, Media(Transcriber(settings, http))


async def entries(db: async_sessionmaker[AsyncSession]) -> list[TranscriptEntry]:
    async with db() as session:
        return list(await session.scalars(select(TranscriptEntry).order_by(TranscriptEntry.id)))


# -- Telegram ----------------------------------------------------------------------------------------


@sqlite_only
async def test_telegram_photo_reaches_the_vision_model_with_its_caption(
    db: async_sessionmaker[AsyncSession], vision: tuple[FakeOpenAI, OpenAICompatAgent]
) -> None:
    provider, gpt = vision
    async with running(db, agents={"scripted": gpt}) as telegram:
        fake = telegram.fake
        alice = fake.user("Alice")
        chat = fake.private_chat(alice)
        fake.send_file(chat, alice, "photo", PNG, "what is on this screenshot?")
        await telegram.final(chat, "echo #1: what is on this screenshot? [1 images]")
    assert provider.images == [("image/jpeg", PNG)]  # the bytes Telegram served, as a data URL
    assert provider.rejections == []
    (user, _) = [e for e in await entries(db) if e.role in (Role.USER, Role.AGENT)]
    assert user.attachments == [
        {"kind": "image", "mime": "image/jpeg", "size": len(PNG), "name": "photo.jpg"}
    ]


@sqlite_only
async def test_telegram_voice_note_is_transcribed_shown_and_answered(
    db: async_sessionmaker[AsyncSession],
    vision: tuple[FakeOpenAI, OpenAICompatAgent],
    whisper: tuple[FakeTranscription, Media],
) -> None:
    provider, gpt = vision
    transcription, media = whisper
    transcription.say("my order never arrived")
    async with running(db, agents={"scripted": gpt}, media=media) as telegram:
        fake = telegram.fake
        alice = fake.user("Alice")
        chat = fake.private_chat(alice)
        fake.send_file(chat, alice, "voice", VOICE, mime="audio/ogg", duration=4)
        heard = await telegram.final(chat, "🎙️ I heard:\nmy order never arrived")
        await telegram.final(chat, "echo #1: my order never arrived")
    assert [e["type"] for e in heard.entities] == ["expandable_blockquote"]  # collapsible
    (received,) = transcription.received
    assert (received.audio, received.model, received.content_type) == (VOICE, "whisper-1", "audio/ogg")
    assert provider.requests[0]["messages"][-1]["content"] == "my order never arrived"


@sqlite_only
async def test_telegram_voice_note_without_transcription_gets_a_clear_answer(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with running(db) as telegram:  # no [transcription]
        fake = telegram.fake
        alice = fake.user("Alice")
        chat = fake.private_chat(alice)
        fake.send_file(chat, alice, "voice", VOICE, mime="audio/ogg", duration=4)
        await telegram.final(chat, MediaNotices.cannot_listen)
    assert telegram.agent.turns == []  # nothing to answer: the user was told


@sqlite_only
async def test_telegram_voice_note_with_transcription_down_is_answered_and_its_caption_goes_on(
    db: async_sessionmaker[AsyncSession], whisper: tuple[FakeTranscription, Media]
) -> None:
    transcription, media = whisper
    transcription.fail(503)
    async with running(db, media=media) as telegram:
        fake = telegram.fake
        bob = fake.user("Bob")
        chat = fake.private_chat(bob)
        fake.send_file(chat, bob, "voice", VOICE, "and my typed words", mime="audio/ogg", duration=4)
        await telegram.final(chat, MediaNotices.voice_failed)
        await telegram.final(chat, "scripted: and my typed words (#1)")  # the caption still goes on


@sqlite_only
async def test_telegram_file_the_agent_cannot_take_is_named_once_and_the_text_goes_through(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with running(db) as telegram:  # the scripted agent takes text only
        fake = telegram.fake
        alice = fake.user("Alice")
        chat = fake.private_chat(alice)
        fake.send_file(
            chat, alice, "document", b"%PDF-1.7", "see the invoice", mime="application/pdf", name="a.pdf"
        )
        notice = MediaNotices.left_out.format(
            items="your file a.pdf (it cannot take files)", after=MediaNotices.after_text
        )
        await telegram.final(chat, notice)
        await telegram.final(chat, "scripted: see the invoice (#1)")
        fake.send_file(chat, alice, "sticker", b"RIFF", emoji="👍")
        await telegram.final(chat, "scripted: 👍 (#2)")  # a sticker stands for its emoji
    assert fake.downloads == []  # nothing was downloaded for an agent that cannot take it


@sqlite_only
async def test_telegram_file_over_the_20_mb_download_limit_is_named_and_the_text_goes_through(
    db: async_sessionmaker[AsyncSession], vision: tuple[FakeOpenAI, OpenAICompatAgent]
) -> None:
    """Telegram does not always state a file's size; getFile then refuses it ("file is too big") and the
    user is told that limit, not a download failure."""
    provider, gpt = vision
    async with running(db, agents={"scripted": gpt}) as telegram:
        fake = telegram.fake
        alice = fake.user("Alice")
        chat = fake.private_chat(alice)
        big = bytes(OVER_TELEGRAM)
        fake.send_file(chat, alice, "document", big, "look", mime="image/png", name="big.png", sized=False)
        notice = MediaNotices.left_out.format(
            items="your image big.png (it is over the 20.0 MB this chat lets bots download)",
            after=MediaNotices.after_text,
        )
        await telegram.final(chat, notice)
        await telegram.final(chat, "echo #1: look")
    assert [r.description for r in fake.requests if r.method == "getFile"] == ["file is too big"]
    assert fake.downloads == [] and provider.images == []


@sqlite_only
async def test_telegram_voice_note_with_transcription_hanging_is_answered_and_its_caption_goes_on(
    db: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    async with FakeTranscription() as transcription:
        transcription.hang_next()
        settings = TranscriptionSettings(url=HttpUrl(transcription.url), timeout_seconds=0.2)
        async with running(db, media=Media(Transcriber(settings, http))) as telegram:
            fake = telegram.fake
            bob = fake.user("Bob")
            chat = fake.private_chat(bob)
            fake.send_file(chat, bob, "voice", VOICE, "typed too", mime="audio/ogg", duration=4)
            await telegram.final(chat, MediaNotices.voice_failed)
            await telegram.final(chat, "scripted: typed too (#1)")
    assert transcription.received == []  # it never answered


# -- Discord -----------------------------------------------------------------------------------------


def discord_config(fake: FakeDiscord) -> DiscordConfig:
    return DiscordConfig(
        token=SecretStr(fake.token),
        api_base=fake.api_base,
        gateway_url=fake.gateway_url,
        guild_ready_timeout=0.05,
        edit_interval=0.02,
    )


def gpt_relay(db: async_sessionmaker[AsyncSession], gpt: OpenAICompatAgent) -> Relay:
    policy = RelayPolicy(
        default_agent="gpt",
        idle_timeout=timedelta(minutes=30),
        handoff_expiry=timedelta(minutes=10),
        bindings={},
    )
    return Relay(db, {"gpt": gpt}, policy)


@sqlite_only
async def test_discord_screenshot_reaches_the_vision_model_and_a_file_the_cdn_lost_is_named(
    db: async_sessionmaker[AsyncSession], vision: tuple[FakeOpenAI, OpenAICompatAgent]
) -> None:
    provider, gpt = vision
    async with FakeDiscord() as fake:
        alice = fake.add_user("alice")
        bridge = DiscordBridge(discord_config(fake), gpt_relay(db, gpt))
        await bridge.start()
        try:
            dm = fake.dm_channel(alice)
            shot = fake.attachment("screen.png", PNG, "image/png")
            await fake.user_says(dm, alice, "why this error?", files=[shot])
            await fake.wait_for_texts(dm, ["echo #1: why this error? [1 images]"])
            lost = fake.attachment("second.png", PNG, "image/png")
            fake.cdn_gone.add(lost.id)
            await fake.user_says(dm, alice, "and this one", files=[lost])
            notice = MediaNotices.left_out.format(
                items="your image second.png (it could not be downloaded)", after=MediaNotices.after_text
            )
            await fake.wait_for_texts(
                dm, ["echo #1: why this error? [1 images]", notice, "echo #2: and this one"]
            )
        finally:
            await bridge.close(grace=1.0)
    assert provider.images == [("image/png", PNG)]
    assert fake.cdn_requests == [shot.id, lost.id]


# -- handoffs ----------------------------------------------------------------------------------------


async def test_a_photo_crosses_a_handoff_both_ways_between_telegram_and_discord(
    convocore_app: App,
) -> None:
    """Uma on Telegram is served from the Discord desk: her photo reaches the thread (and the Telegram
    topic), Maya's photo reaches Uma, and the transcript file lists both."""
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    uma, chat, _ = await convocore_user_asks_for_a_human(app)
    note, thread = await app.discord_notification()
    handoff_id = (await app.handoff()).id
    _, topic = await app.telegram_notification(handoff_id)
    await app.discord_press(note, "claim", p.maya)

    telegram.send_file(chat, uma, "photo", PNG, "here is the receipt")
    posted = await discord.wait_until(
        lambda: next((m for m in discord.bot_messages(thread) if m.attachments), None), what="Uma's photo"
    )
    assert discord_texts(discord, thread)[-2:] == ["**Uma:** here is the receipt", "**Uma:**"]
    assert [(a.filename, a.data) for a in posted.attachments] == [("photo.jpg", PNG)]
    await telegram.wait_for(
        lambda: any(
            m.document and m.document.content == PNG for m in telegram.bot_messages(p.tg_mods, topic)
        ),
        what="Uma's photo in the Telegram topic",
    )

    shot = discord.attachment("answer.png", PNG, "image/png")
    await discord.user_says(thread, p.maya, "is this the one?", files=[shot])
    await telegram.wait_for(
        lambda: any(m.document and m.document.content == PNG for m in telegram.bot_messages(chat)),
        what="Maya's photo with Uma",
    )
    (sent,) = [m for m in telegram.bot_messages(chat) if m.document]
    assert sent.document is not None and sent.document.file_name == "answer.png"
    assert "maya (moderator): is this the one?" in [m.text for m in telegram.bot_messages(chat)]

    await app.discord_press(note, "resolve", p.maya)
    logged = await discord.wait_until(
        lambda: next((m for m in discord.bot_messages(p.log) if m.attachments), None), what="the transcript"
    )
    transcript = logged.attachments[0].text
    assert "user: here is the receipt [files: photo.jpg (image, 1 KB)]" in transcript
    assert f"moderator discord:{p.maya.id}: is this the one? [files: answer.png (image, 1 KB)]" in transcript


async def test_a_file_too_large_for_a_handoff_becomes_a_clear_note_on_each_desk(convocore_app: App) -> None:
    """Uma's 20 MB + 1 byte file: over the Discord desk's 10 MiB upload limit (refused before any
    download), and over the 20 MB Telegram lets the bot download for the Telegram topic (getFile
    refuses it). Each desk is told which, and her text still arrives."""
    app, p = convocore_app, convocore_app.p
    discord, telegram = p.discord, p.telegram
    uma, chat, _ = await convocore_user_asks_for_a_human(app)
    note, thread = await app.discord_notification()
    handoff_id = (await app.handoff()).id
    _, topic = await app.telegram_notification(handoff_id)
    await app.discord_press(note, "claim", p.maya)

    telegram.send_file(
        chat, uma, "document", bytes(OVER_TELEGRAM), "the log", mime="text/plain", name="x.log"
    )
    too_large = FileNotices.too_large.format(author="Uma", name="x.log", limit="10 MB")
    await discord.wait_until(lambda: too_large in discord_texts(discord, thread), what="the Discord note")
    assert "**Uma:** the log" in discord_texts(discord, thread)
    beyond = FileNotices.beyond_platform.format(author="Uma", name="x.log", limit="20 MB")
    await telegram.wait_for(
        lambda: any(m.text.endswith(beyond) for m in telegram.bot_messages(p.tg_mods, topic)),
        what="the Telegram note",
    )
    assert telegram.downloads == []


async def test_an_image_in_a_format_the_model_cannot_read_is_named_and_the_text_goes_through() -> None:
    """A HEIC photo sent as a file would make a vision model refuse the whole turn: it is left out, with
    a word why, and nothing is downloaded."""
    fetched: list[int] = []

    async def fetch(max_bytes: int) -> bytes:
        fetched.append(max_bytes)
        return b"..."

    class Vision:
        name = "vision"
        media = MediaSupport(max_images=2, max_image_bytes=1 << 20)

    photo = Attachment(kind="image", mime="image/heic", size=1000, name="IMG_0001.HEIC", fetch=fetch)
    inbound = Inbound("telegram", "1", "2", "Uma", "what is this?", attachments=(photo,))
    offer = await Media().offer(inbound, Vision(), Catalogue().words())  # type: ignore[arg-type]
    assert offer.attachments == () and not offer.empty and fetched == []
    assert offer.notice is not None and MediaNotices.image_format in offer.notice
    assert offer.notice.endswith(MediaNotices.after_text)
