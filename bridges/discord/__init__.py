"""Discord: a discord.py cog that streams agent replies, and the moderator desk (see bridge.DiscordBridge).

Imported lazily through bridges/registry.py; importing this package pulls in nothing else.
"""
