"""Who may do what: the roles, and the one check the admin and the API both use.

What a user may *see* is decided by `TeamScopedQuerySet.for_user()` (their teams'
objects; superusers see all). What they may *do* is a Django permission, given
through the groups Viewer, Operator and Administrator (created by a data
migration from ROLES). The operator actions (`cms.inventory.actions`,
`failover.actions`) ask `can()` through `cms.actions.require()`, whoever calls
them; the admin's action lists and the API's permission class ask it as well,
to offer only what the role allows.
"""

from __future__ import annotations

from typing import Any

# An action of the product -> the permission it needs.
ACTIONS: dict[str, str] = {
    "enable": "inventory.enable_server",  # enable and disable
    "test_connection": "inventory.test_connection",
    "lock": "inventory.lock_server",  # lock and unlock
    "manage_licenses": "inventory.manage_licenses",
    "trigger_failover": "failover.trigger_failover",
    "fail_back": "failover.fail_back",
    "stop_restoration": "failover.stop_restoration",
    "replace_server": "failover.replace_server",
}

_VIEWABLE = [
    "inventory.team", "inventory.recordingserver", "inventory.failoverserver",
    "inventory.license", "inventory.licensemove", "failover.protection",
    "failover.failoversettings", "failover.failoverevent", "failover.eventtransition",
    "failover.restorationjob", "failover.configsnapshot", "auditlog.logentry",
    "failover.drill", "failover.drilltargets", "failover.guardhold",
    "alerts.channel", "alerts.alert",
]  # fmt: skip


def _view(model: str) -> str:
    app, name = model.split(".")
    return f"{app}.view_{name}"


def _crud(model: str) -> list[str]:
    app, name = model.split(".")
    return [f"{app}.{verb}_{name}" for verb in ("add", "change", "delete")]


VIEWER = [_view(m) for m in _VIEWABLE]
OPERATOR = [
    *VIEWER,
    ACTIONS["enable"],
    ACTIONS["test_connection"],
    ACTIONS["trigger_failover"],
    ACTIONS["fail_back"],
    ACTIONS["stop_restoration"],
]
ADMINISTRATOR = [
    *OPERATOR,
    *_crud("inventory.recordingserver"),
    *_crud("inventory.failoverserver"),
    *_crud("inventory.license"),
    *_crud("failover.protection"),
    *_crud("alerts.channel"),
    "failover.change_failoversettings",
    *_crud("failover.drilltargets"),
    ACTIONS["manage_licenses"],
    ACTIONS["replace_server"],
    ACTIONS["lock"],
]
ROLES: dict[str, list[str]] = {
    "Viewer": VIEWER,
    "Operator": OPERATOR,
    "Administrator": ADMINISTRATOR,
}


def can(user: Any, action: str) -> bool:
    """May `user` perform the product action `action` (see ACTIONS)?"""
    return bool(user and user.is_active and user.has_perm(ACTIONS[action]))


def may_use_stored_password(user: Any, server: Any) -> bool:
    """Connecting with a server's stored password (Test Connection of a saved server) is
    an edit of that server: its tab's change permission, as in the admin."""
    return bool(user and user.is_active and user.has_perm(f"inventory.change_{server.role}server"))


def may_see_failover_settings(user: Any, team: Any) -> bool:
    """A team's failover settings: its members with the view permission (and superusers);
    the CMS's defaults (`team` None): superusers."""
    return _on_team_settings(user, team, "failover.view_failoversettings")


def may_change_failover_settings(user: Any, team: Any) -> bool:
    """A team's failover settings: its Administrators (and superusers); the CMS's
    defaults (`team` None), which every team without its own follows: superusers only."""
    return _on_team_settings(user, team, "failover.change_failoversettings")


def _on_team_settings(user: Any, team: Any, perm: str) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    if user.is_superuser:
        return True
    if team is None or not user.has_perm(perm):
        return False
    return team.memberships.filter(user=user).exists()  # as Team.objects.for_user()


def sync_roles(apps: Any = None, *, strict: bool = True) -> None:
    """Create or update the three groups with exactly their permissions.

    ``strict=False`` is for migrations: a permission added by a later migration does not
    exist yet there, and the post_migrate sync adds it once every migration ran.
    """
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is None and not strict:
                continue
            if found is None:
                raise LookupError(f"permission {perm} does not exist")
            wanted.append(found)
        group.permissions.set(wanted)
