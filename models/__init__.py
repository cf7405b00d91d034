"""The data model (SQLAlchemy 2 typed declarative) and the engine/session factory."""

from models.base import Base, utcnow
from models.binding import AgentBinding
from models.button import StoredButton
from models.conversation import Conversation, ConversationStatus, Role, TranscriptEntry, User
from models.db import create_engine, normalize_url, safe_url, session_factory
from models.delivery import DeliveryKind, PendingDelivery
from models.handoff import OPEN_HANDOFF_STATUSES, Handoff, HandoffPlace, HandoffStatus, MessageCopy, place_key
from models.inbound import InboundMessage
from models.rating import MAX_SCORE, Rating
from models.snippet import Snippet
from models.usage import UsageCounter

__all__ = [
    "MAX_SCORE",
    "OPEN_HANDOFF_STATUSES",
    "AgentBinding",
    "Base",
    "Conversation",
    "ConversationStatus",
    "DeliveryKind",
    "Handoff",
    "HandoffPlace",
    "HandoffStatus",
    "InboundMessage",
    "MessageCopy",
    "PendingDelivery",
    "Rating",
    "Role",
    "Snippet",
    "StoredButton",
    "TranscriptEntry",
    "UsageCounter",
    "User",
    "create_engine",
    "normalize_url",
    "place_key",
    "safe_url",
    "session_factory",
    "utcnow",
]
