"""Who may use the bot (bot/access.py): the rule itself, its refusal notices, and what
``framechain check`` and the start-up log say. The per-platform tables are in
test_access_telegram.py and test_access_discord.py."""

from __future__ import annotations

import pytest

from bot.access import AccessRule, Actor, RefusalNotices, Standing, access_rules
from shared.config import Config, DiscordConfig, Secret, TelegramConfig

ADMIN, ALICE, BOB = 1, 2, 3
ROLE, GUILD, GROUP = 50, 60, -100


def discord(**keys: object) -> AccessRule:
    return AccessRule.for_discord(DiscordConfig(admin_ids=(ADMIN,), **keys))  # type: ignore[arg-type]


def telegram(**keys: object) -> AccessRule:
    return AccessRule.for_telegram(TelegramConfig(admin_ids=(ADMIN,), **keys))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "actor", "standing"),
    [
        # Nothing configured: closed. Only the admins get in.
        (AccessRule.for_discord(DiscordConfig()), Actor(ALICE, guild_id=GUILD), Standing.REFUSED),
        (AccessRule.for_telegram(TelegramConfig()), Actor(ALICE, chat_id=ALICE), Standing.REFUSED),
        (discord(), Actor(ADMIN, guild_id=GUILD), Standing.ADMIN),
        (discord(), Actor(ALICE, role_ids=frozenset({ROLE}), guild_id=GUILD), Standing.REFUSED),
        (telegram(), Actor(ADMIN, chat_id=GROUP), Standing.ADMIN),
        (telegram(), Actor(ALICE, chat_id=GROUP), Standing.REFUSED),
        # Allowlists.
        (discord(allowed_user_ids=(ALICE,)), Actor(ALICE), Standing.ALLOWED),
        (discord(allowed_user_ids=(ALICE,)), Actor(BOB, guild_id=GUILD), Standing.REFUSED),
        (discord(allowed_role_ids=(ROLE,)), Actor(BOB, role_ids=frozenset({ROLE, 7})), Standing.ALLOWED),
        (discord(allowed_role_ids=(ROLE,)), Actor(BOB, role_ids=frozenset({7})), Standing.REFUSED),
        (discord(allowed_guild_ids=(GUILD,)), Actor(BOB, guild_id=GUILD), Standing.ALLOWED),
        (discord(allowed_guild_ids=(GUILD,)), Actor(BOB, guild_id=GUILD + 1), Standing.REFUSED),
        (discord(allowed_guild_ids=(GUILD,)), Actor(BOB), Standing.REFUSED),
        (telegram(allowed_user_ids=(ALICE,)), Actor(ALICE, chat_id=GROUP), Standing.ALLOWED),
        (telegram(allowed_chat_ids=(GROUP,)), Actor(BOB, chat_id=GROUP), Standing.ALLOWED),
        # Being in an allowed group does not let a user in elsewhere (their private chat).
        (telegram(allowed_chat_ids=(GROUP,)), Actor(BOB, chat_id=BOB), Standing.REFUSED),
        # Open: everyone; admins stay admins.
        (discord(open=True), Actor(BOB), Standing.ALLOWED),
        (telegram(open=True), Actor(BOB, chat_id=BOB), Standing.ALLOWED),
        (telegram(open=True), Actor(ADMIN, chat_id=BOB), Standing.ADMIN),
    ],
)
def test_who_gets_in(rule: AccessRule, actor: Actor, standing: Standing) -> None:
    assert rule.standing(actor) is standing
    assert rule.allows(actor) is (standing is not Standing.REFUSED)


def test_the_refusal_names_the_user_id_and_the_key() -> None:
    assert telegram().refusal(12345) == (
        "You're not allowed to use this bot. Ask its owner to add your user id 12345 to telegram.allowed_user_ids."
    )
    assert "user id 7 to discord.allowed_user_ids" in discord().refusal(7)


async def test_a_refused_user_is_told_once_per_interval() -> None:
    now = [1000.0]
    notices = RefusalNotices(60.0, clock=lambda: now[0])
    assert await notices.due("telegram", str(ALICE))
    assert not await notices.due("telegram", str(ALICE))  # every further message within the interval: silence
    assert await notices.due("telegram", str(BOB))  # per user
    assert await notices.due("discord", str(ALICE))  # and per platform
    now[0] += 59
    assert not await notices.due("telegram", str(ALICE))
    now[0] += 2
    assert await notices.due("telegram", str(ALICE))


async def test_a_flood_of_strangers_is_remembered_within_bounds() -> None:
    notices = RefusalNotices(60.0, memory=100, clock=lambda: 0.0)
    assert all([await notices.due("telegram", str(user)) for user in range(1000)])
    assert len(notices._told) == 100
    assert not await notices.due("telegram", "999")  # the latest are still remembered


def test_the_summary_says_plainly_who_can_use_the_bot() -> None:
    assert AccessRule.for_telegram(TelegramConfig()).summary() == (
        "telegram: CLOSED, nobody can use the bot yet; add user ids to telegram.admin_ids or telegram.allowed_user_ids"
    )
    assert discord(allowed_role_ids=(ROLE,), allowed_guild_ids=(GUILD,)).summary() == (
        f"discord: only admins {ADMIN}; anyone with roles {ROLE}; anyone in guilds {GUILD}; everyone else is refused"
    )
    assert telegram(allowed_user_ids=(BOB, ALICE)).summary() == (
        f"telegram: only admins {ADMIN}; users {ALICE}, {BOB}; everyone else is refused"
    )
    assert telegram(open=True).summary() == "telegram: OPEN, anyone can use your GPU (telegram.open = true)"


def test_rules_only_for_enabled_platforms() -> None:
    config = Config(telegram=TelegramConfig(token=Secret("1:x"), open=True))
    assert [rule.platform for rule in access_rules(config)] == ["telegram"]
