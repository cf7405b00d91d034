"""Which agent answers where: bindings stored by an admin's `/agent` take precedence over configured ones,
and the most specific place wins (a channel before its server, anything before the global scope)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.registry import GLOBAL_SCOPE
from bridges.surface import Inbound
from models import AgentBinding

Place = tuple[str, str]
"""(scope, id): ("global", "") or a place a platform declares, such as a channel."""
StoredBindings = Mapping[Place, str]
"""What admins bound with `/agent`, by place."""


class Bindings:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        agents: Collection[str],
        default_agent: str,
        configured: Mapping[Place, str],
    ) -> None:
        self.db = db
        self.agents = agents
        self.default_agent = default_agent
        self.configured = configured

    async def bind(self, scope: str, scope_id: str, agent_name: str, *, by: str) -> None:
        """Store which agent answers in a scope (an admin's `/agent`); new conversations there use it.
        Raises ValueError, with words for the admin, for an agent that is not configured."""
        if agent_name not in self.agents:
            known = ", ".join(sorted(self.agents))
            raise ValueError(f"unknown agent {agent_name!r}; configured agents: {known}")
        async with self.db.begin() as session:
            binding = await session.scalar(
                select(AgentBinding).where(AgentBinding.scope == scope, AgentBinding.scope_id == scope_id)
            )
            if binding is None:
                session.add(
                    AgentBinding(scope=scope, scope_id=scope_id, agent_name=agent_name, created_by=by)
                )
            else:
                binding.agent_name, binding.created_by = agent_name, by

    async def stored(self, session: AsyncSession, inbounds: Iterable[Inbound]) -> StoredBindings:
        """The stored bindings of every place these messages come from, read once for all of them."""
        scopes = {scope for inbound in inbounds for scope, _ in _places(inbound)}
        return {
            (binding.scope, binding.scope_id): binding.agent_name
            for binding in await session.scalars(select(AgentBinding).where(AgentBinding.scope.in_(scopes)))
        }

    def agent_for(self, inbound: Inbound, stored: StoredBindings) -> str:
        """The agent a new conversation for this message starts with (`stored`: see `stored`)."""
        for place in _places(inbound):
            for source in (stored, self.configured):
                name = source.get(place)
                if name is not None and name in self.agents:
                    return name
        return self.default_agent


def _places(inbound: Inbound) -> list[Place]:
    """Where the message comes from, the most specific place first."""
    return [*inbound.binding_scopes, (GLOBAL_SCOPE, "")]
