"""`hearth users …`: web accounts of catalog people, one-time passwords and API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hearthkit.cli.common import WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.errors import HearthError

users_app = typer.Typer(help="Web accounts: add people with a role, one-time passwords, API tokens. Nobody "
                             "registers themselves: the workspace owner adds a community's first steward, "
                             "stewards add the rest.\n\n"
                             "Example: hearth users add aroha --steward-of 'Ngāti Example'", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts: scoped, revocable, shown once.\n\n"
                             "Example: hearth users token create aroha --scope read --scope transcribe",
                        no_args_is_help=True)
users_app.add_typer(token_app, name="token")


def _new_account(catalog, name: str, by: str | None = None) -> str | None:
    """An account with a one-time password for NAME, unless they already have one (audited, made BY)."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Person
    from hearthkit.governance.identity import ensure_account

    with catalog.session() as s:
        return ensure_account(s, s.scalar(select(Person).where(Person.name == name)), by=by)


@users_app.command("add", help="Add a person with a role and a web account (one-time password printed). "
                               "--steward-of makes a community's steward and is for the workspace owner only; "
                               "other roles are granted by a steward with --by.\n\n"
                               "Example: hearth users add mere --community 'Ngāti Example' --role member --by aroha")
@user_errors
def add(
    name: Annotated[str, typer.Argument(help="The person's sign-in name.")],
    steward_of: Annotated[str | None, typer.Option("--steward-of", help="Community they become a steward of "
                                                                         "(workspace owner only).")] = None,
    community: Annotated[str | None, typer.Option(help="Community of the role (with --role and --by).")] = None,
    role: Annotated[str | None, typer.Option(help="member | researcher | partner | steward.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="The steward of the community granting the role.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import add_person

    ws, catalog = open_catalog(workspace)
    if steward_of:
        if community or role or by:
            raise HearthError("--steward-of stands alone; use --community, --role and --by for other roles")
        owner = ws.require_owner(f"make a steward of {steward_of}")
        add_person(catalog, name, steward_of, "steward", owner=owner)
        granted, by = f"a steward of {steward_of}", f"owner:{owner}"
    else:
        if not (community and role and by):
            raise HearthError("name the role: --steward-of COMMUNITY (workspace owner), or --community C --role R "
                              "--by STEWARD")
        add_person(catalog, name, community, role, by=by)
        granted = f"a {role} of {community}"
    password = _new_account(catalog, name, by)
    console.print(f"{name} is now {granted}")
    if password:
        # One line, never wrapped: the password must be copied whole.
        console.print(f"one-time password for {name}: {password}", highlight=False, soft_wrap=True)


@users_app.command("passwd", help="Give a person a new one-time password (printed); their sessions end.\n\n"
                                  "Example: hearth users passwd mere")
@user_errors
def passwd(name: Annotated[str, typer.Argument(help="The person's sign-in name.")],
           by: Annotated[str | None, typer.Option("--by", help="A steward of one of the person's communities "
                                                               "(else the workspace owner must run this).")] = None,
           workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance import identity

    ws, catalog = open_catalog(workspace)
    actor = _may_manage(ws, catalog, name, by, "reset the password of")
    pw = identity.reset_password(catalog, name, by=actor)
    console.print(f"one-time password for {name}: {pw}", highlight=False, soft_wrap=True)


def _may_manage(ws, catalog, name: str, by: str | None, action: str) -> str:
    """A steward of one of NAME's communities (--by), or the workspace owner, may manage NAME's account; returns
    the actor as the audit log names them."""
    if by is None:
        return "owner:" + ws.require_owner(f"{action} {name}")
    from sqlalchemy import select

    from hearthkit.catalog.models import Person
    from hearthkit.governance.identity import identity

    with catalog.session() as s:
        pid = s.scalar(select(Person.id).where(Person.name == name))
    who = identity(catalog, pid) if pid is not None else None
    me = identity(catalog, _person_id(catalog, by))
    if who is None:
        raise HearthError(f"person {name!r} is unknown; add them with `hearth users add`")
    if me is None or not any("steward" in me.roles.get(c, ()) for c in who.roles):
        raise HearthError(f"{by} is not a steward of any community of {name}; ask one, or the workspace owner")
    return by


@users_app.command("disable", help="Disable a person's web account: their sessions end and their API tokens stop "
                                   "working at once (audited). `hearth users enable` undoes it.\n\n"
                                   "Example: hearth users disable mere --by aroha")
@user_errors
def disable(name: Annotated[str, typer.Argument(help="The person's sign-in name.")],
            by: Annotated[str | None, typer.Option("--by", help="A steward of one of the person's communities "
                                                                "(else the workspace owner must run this).")] = None,
            workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance import identity

    ws, catalog = open_catalog(workspace)
    changed = identity.set_disabled(catalog, name, True, by=_may_manage(ws, catalog, name, by, "disable"))
    console.print(f"{name}'s account is disabled" if changed else f"{name}'s account was already disabled")


@users_app.command("enable", help="Enable a disabled web account again (audited).\n\n"
                                  "Example: hearth users enable mere --by aroha")
@user_errors
def enable(name: Annotated[str, typer.Argument(help="The person's sign-in name.")],
           by: Annotated[str | None, typer.Option("--by", help="A steward of one of the person's communities "
                                                               "(else the workspace owner must run this).")] = None,
           workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance import identity

    ws, catalog = open_catalog(workspace)
    changed = identity.set_disabled(catalog, name, False, by=_may_manage(ws, catalog, name, by, "enable"))
    console.print(f"{name}'s account is enabled" if changed else f"{name}'s account was not disabled")


def _person_id(catalog, name: str) -> int:
    from sqlalchemy import select

    from hearthkit.catalog.models import Person

    with catalog.session() as s:
        return s.scalar(select(Person.id).where(Person.name == name)) or -1


@users_app.command("ls", help="List accounts with their roles, whether the password is still one-time, "
                              "lock state and live tokens.\n\nExample: hearth users ls")
@user_errors
def ls(workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance.identity import accounts

    _, catalog = open_catalog(workspace)
    t = Table("name", "roles", "one-time password", "locked", "tokens")
    for a in accounts(catalog):
        t.add_row(a.name, a.roles, "yes" if a.must_change else "no", "yes" if a.locked else "no", str(a.tokens))
    console.print(t)


@token_app.command("create", help="Create an API token for a person (printed once; only its hash is kept).\n\n"
                                  "Example: hearth users token create aroha --scope read --scope approve --days 30")
@user_errors
def token_create(
    name: Annotated[str, typer.Argument(help="Whose token it is.")],
    scope: Annotated[list[str], typer.Option("--scope", help="Allowed scope (repeat): read, request, approve, "
                                                             "transcribe, translate, monitor, admin.")],
    label: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(help="Days until it expires.")] = 90,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance import identity

    ws, catalog = open_catalog(workspace)
    owner = ws.require_owner(f"create an API token for {name}")  # a person makes their own on the web Tokens page
    tid, raw = identity.create_token(catalog, name, label, scope, days, by=f"owner:{owner}")
    console.print(f"token {tid} for {name} ({', '.join(sorted(set(scope)))}); shown once:\n{raw}", highlight=False)


@token_app.command("revoke", help="Revoke an API token by id.\n\nExample: hearth users token revoke 3")
@user_errors
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id (see `hearth users token ls`).")],
                 workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance import identity

    ws, catalog = open_catalog(workspace)
    owner = ws.require_owner(f"revoke token {token_id}")
    identity.revoke_token(catalog, token_id, by=f"owner:{owner}")
    console.print(f"token {token_id} revoked")


@token_app.command("ls", help="List API tokens (never their values).\n\nExample: hearth users token ls")
@user_errors
def token_ls(workspace: WorkspaceOpt = None) -> None:
    from hearthkit.governance import identity

    _, catalog = open_catalog(workspace)
    t = Table("id", "person", "name", "scopes", "expires", "revoked")
    for x in identity.tokens(catalog):
        t.add_row(str(x.id), x.person, x.name, ",".join(x.scopes),
                  x.expires_at.date().isoformat() if x.expires_at else "never",
                  x.revoked_at.date().isoformat() if x.revoked_at else "")
    console.print(t)
