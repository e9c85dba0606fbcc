"""Steward commands: people, protocols, labels, consent, embargo, requests and approvals, the audit log."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table
from hearthkit.errors import HearthError

ByOpt = Annotated[str, typer.Option("--by", help="The steward acting (must be a steward of the community).")]
CollOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
ItemOpt = Annotated[str | None, typer.Option("--item", "-i", help="Item id within the collection (its external id); "
                                                                     "omit for the whole collection.")]


def _date(value: str | None, option: str) -> date | None:
    """Parse an ISO date option, or a one-line error naming it."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HearthError(f"{option} {value!r}: expected a date YYYY-MM-DD") from None


people_app = typer.Typer(help="People and their roles in communities.\n\n"
                              "Example: hearth people add aroha --community 'Ngāti Example' --role steward --as-owner",
                         no_args_is_help=True)
labels_app = typer.Typer(help="Apply or remove Local Contexts TK/BC labels and notices.\n\n"
                              "Example: hearth labels apply tk:seasonal -c korero -i rec_001 --season 05-01..08-31 "
                              "--by aroha", no_args_is_help=True)
consent_app = typer.Typer(help="Record or withdraw collective and individual consent.\n\n"
                               "Example: hearth consent withdraw 3 --by aroha", no_args_is_help=True)
protocol_app = typer.Typer(help="Cultural protocols (Mukurtu-style): groups of people who may use items.\n\n"
                                "Example: hearth protocol create women-knowledge --community 'Ngāti Example' "
                                "--by aroha", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.\n\nExample: hearth audit verify", no_args_is_help=True)


@people_app.command("add", help="Give a person a role (steward, member, researcher, partner) in a community. A "
                                "steward of the community grants roles with --by; the workspace owner grants them "
                                "with --as-owner (the only way to add a community's first steward).\n\n"
                                "Example: hearth people add mere --community 'Ngāti Example' --role member --by aroha")
@user_errors
def people_add(
    name: Annotated[str, typer.Argument(help="The person's handle (used as requester and --by).")],
    community: Annotated[str, typer.Option(help="Community name.")],
    role: Annotated[str, typer.Option(help="steward | member | researcher | partner.")],
    by: Annotated[str | None, typer.Option("--by", help="Steward of the community granting the role.")] = None,
    as_owner: Annotated[bool, typer.Option("--as-owner", help="Grant it as the workspace owner (checked against "
                                                              "the OS account running hearth).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import add_person

    ws, catalog = open_catalog(workspace)
    owner = ws.require_owner(f"grant roles in {community}") if as_owner else None
    add_person(catalog, name, community, role, by, owner)
    console.print(f"{name} is now a {role} of {community}")


@protocol_app.command("create", help="Create a protocol of a community.\n\nExample: hearth protocol create "
                                     "women-knowledge --community 'Ngāti Example' --by aroha")
@user_errors
def protocol_create(
    name: Annotated[str, typer.Argument(help="Protocol name (unique).")],
    community: Annotated[str, typer.Option(help="The community whose protocol it is.")],
    by: ByOpt,
    description: Annotated[str | None, typer.Option(help="What the protocol is for.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import create_protocol

    _, catalog = open_catalog(workspace)
    create_protocol(catalog, name, community, by, description)
    console.print(f"protocol {name} created for {community}")


@protocol_app.command("add-member", help="Put a person inside a protocol.\n\n"
                                         "Example: hearth protocol add-member women-knowledge mere --by aroha")
@user_errors
def protocol_add_member(
    protocol: Annotated[str, typer.Argument(help="Protocol name.")],
    person: Annotated[str, typer.Argument(help="Person's handle (see `hearth people add`).")],
    by: ByOpt,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import add_protocol_member

    _, catalog = open_catalog(workspace)
    add_protocol_member(catalog, protocol, person, by)
    console.print(f"{person} is inside protocol {protocol}")


@protocol_app.command("assign", help="Place items (default: the whole collection) under a protocol; --sharing all "
                                     "means a requester must be inside every protocol of the item, any means one "
                                     "is enough.\n\nExample: hearth protocol assign women-knowledge -c korero "
                                     "-i rec_001 --sharing any --by aroha")
@user_errors
def protocol_assign(
    protocol: Annotated[str, typer.Argument(help="Protocol name.")],
    collection: CollOpt,
    by: ByOpt,
    item: Annotated[list[str] | None, typer.Option("--item", "-i", help="Item id (repeat); default every item.")]
    = None,
    sharing: Annotated[str | None, typer.Option(help="all | any (default: leave as is; new items are all).")]
    = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import assign_protocol
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    n = assign_protocol(catalog, protocol, collection, item, by, sharing, store=workspace_store(ws))
    console.print(f"{n} item(s) placed under protocol {protocol}; collection {collection} is sealed (its audio "
                  "and words are stored encrypted)", highlight=False)


@labels_app.command("apply", help="Apply a label (key as the Local Contexts Hub spells it, e.g. tk:non_commercial) "
                                  "to an item or a whole collection, with the community's own wording.\n\n"
                                  "Example: hearth labels apply tk:multiple_community -c korero -i rec_001 "
                                  "--also 'Ngāti Other' --by aroha")
@user_errors
def labels_apply(
    key: Annotated[str, typer.Argument(help="Label key, e.g. tk:secret_sacred, bc:research, notice:tk.")],
    collection: CollOpt,
    by: ByOpt,
    item: ItemOpt = None,
    community: Annotated[str | None, typer.Option(help="Community applying it (default: the collection's).")]
    = None,
    text: Annotated[str | None, typer.Option(help="The community's wording of the label.")] = None,
    language: Annotated[str | None, typer.Option(help="Language tag of the text (BCP 47), e.g. mi.")] = None,
    version: Annotated[str | None, typer.Option(help="Label version.")] = None,
    hub_id: Annotated[str | None, typer.Option(help="Local Contexts Hub id of the label.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Protocol the label restricts to (protocol labels).")] = None,
    season: Annotated[str | None, typer.Option(help="Season window MM-DD..MM-DD (tk:seasonal).")] = None,
    also: Annotated[list[str] | None, typer.Option("--also", help="Other communities that must approve "
                                                                    "(multiple_community; repeat).")] = None,
    agreement: Annotated[str | None, typer.Option(help="Reference to the community agreement (commercial "
                                                         "labels).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import apply_label
    from hearthkit.governance.vocabulary import LABELS
    from hearthkit.ingest.sealing import SEALING_CATEGORIES
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    lid = apply_label(catalog, key, collection, by, item, community, text, language, version, hub_id, protocol,
                      season, also, agreement, store=workspace_store(ws))
    console.print(f"label {lid}: {key} applied to {collection}" + (f"/{item}" if item else " (whole collection)"))
    if LABELS.get(key) in SEALING_CATEGORIES:  # apply_label sealed it first, or refused
        console.print(f"collection {collection} is sealed: its audio and words are stored encrypted", highlight=False)


@labels_app.command("remove", help="Remove an applied label by its id (see `hearth data show`).\n\n"
                                   "Example: hearth labels remove 12 --by aroha")
@user_errors
def labels_remove(
    label_id: Annotated[int, typer.Argument(help="Id of the applied label.")],
    by: ByOpt,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import remove_label

    _, catalog = open_catalog(workspace)
    key = remove_label(catalog, label_id, by)
    console.print(f"label {label_id} ({key}) removed")


@consent_app.command("record", help="Record consent: collective (the community, for the collection) or individual "
                                    "(a speaker or contributor). Commercial is never implied: name it.\n\n"
                                    "Example: hearth consent record -c korero --scope individual --subject mere "
                                    "--given-by mere --given-at 2026-03-02 --purpose research --by aroha")
@user_errors
def consent_record(
    collection: CollOpt,
    scope: Annotated[str, typer.Option(help="collective | individual.")],
    subject: Annotated[str, typer.Option(help="Community name (collective) or speaker id (individual).")],
    given_by: Annotated[str, typer.Option(help="Who gave consent.")],
    given_at: Annotated[str, typer.Option(help="Date consent was given (YYYY-MM-DD).")],
    purpose: Annotated[list[str], typer.Option(help="A purpose consented to (repeat).")],
    by: ByOpt,
    expires: Annotated[str | None, typer.Option(help="Date the consent ends (YYYY-MM-DD).")] = None,
    evidence: Annotated[str | None, typer.Option(help="Reference to the signed form or recording.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import record_consent

    _, catalog = open_catalog(workspace)
    cid = record_consent(catalog, collection, scope, subject, given_by, _date(given_at, "--given-at"), purpose, by,
                         _date(expires, "--expires"), evidence)
    console.print(f"consent {cid} recorded ({scope}, {subject}: {', '.join(sorted(purpose))})")


@consent_app.command("withdraw", help="Withdraw consent: a consent record by id, or one item, a speaker or a whole "
                                      "collection. Records it, marks every model that learned from the items (or "
                                      "from a parent that did) needs-retrain, erases the items' bytes from the "
                                      "store, and prints the impact. By a steward, or the person themself.\n\n"
                                      "Example: hearth consent withdraw -c korero --speaker mere --by mere")
@user_errors
def consent_withdraw(
    consent_id: Annotated[int | None, typer.Argument(help="Id of a consent record (see `hearth data show`).")] = None,
    by: Annotated[str, typer.Option("--by", help="A steward, or the person who gave the consent.")] = "",
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")] = None,
    item: Annotated[str | None, typer.Option(help="External id of one item.")] = None,
    speaker: Annotated[str | None, typer.Option(help="A speaker: all of their items.")] = None,
    whole: Annotated[bool, typer.Option("--all", help="The whole collection.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    at: Annotated[str | None, typer.Option(help="Consent record withdrawn from this date (YYYY-MM-DD).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.cli.lineage import print_impact
    from hearthkit.errors import HearthError
    from hearthkit.governance.stewardship import withdraw_consent
    from hearthkit.lineage.withdraw import consent_scope, withdraw
    from hearthkit.store.vault import workspace_store

    if not by:
        raise HearthError("--by is required: the steward, or the person withdrawing their own consent")
    ws, catalog = open_catalog(workspace)
    chosen = [x for x in (("item", item), ("speaker", speaker), ("collection", collection if whole else None)) if x[1]]
    if consent_id is not None:
        if chosen or collection:
            raise HearthError("give a consent id, or --collection with --item/--speaker/--all, not both")
        subject = withdraw_consent(catalog, consent_id, by, _date(at, "--at"), reason)
        console.print(f"consent {consent_id} of {subject} withdrawn")
        collection, scope, subject = consent_scope(catalog, consent_id)
        impact = withdraw(catalog, workspace_store(ws), collection, scope, subject, by, reason, allow_empty=True)
    else:
        if not collection or len(chosen) != 1:
            raise HearthError("name a consent id, or --collection with exactly one of --item, --speaker or --all")
        scope, subject = chosen[0]
        impact = withdraw(catalog, workspace_store(ws), collection, scope, subject, by, reason)
    print_impact(scope, subject, impact)
    if impact.unreadable:  # recorded and erased elsewhere, but a copy of the words may remain: not a success
        raise typer.Exit(1)


@consent_app.command("declare-no-person", help="Declare, as a steward, that no identifiable person is in a "
                                               "recording (or in every recording of a collection). A recording with "
                                               "no speaker recorded is used only with this declaration: unknown is "
                                               "not nobody.\n\nExample: hearth consent declare-no-person birdsong "
                                               "--item dawn_01 --by aroha --note 'birdsong only, checked by "
                                               "listening'")
@user_errors
def consent_declare_no_person(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    by: ByOpt,
    note: Annotated[str, typer.Option(help="How you know (recorded with the declaration).")] = "",
    item: ItemOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import declare_no_person

    _, catalog = open_catalog(workspace)
    did = declare_no_person(catalog, collection, by, note, item)
    console.print(f"declaration {did}: no identifiable person in {collection}"
                  + (f"/{item}" if item else " (every item)"))


@consent_app.command("revoke-declaration", help="Revoke a no-identifiable-person declaration from now; its "
                                                "recordings without a speaker are then excluded again.\n\n"
                                                "Example: hearth consent revoke-declaration 4 --by aroha")
@user_errors
def consent_revoke_declaration(
    declaration_id: Annotated[int, typer.Argument(help="Id the declaration was given.")],
    by: ByOpt,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.governance.stewardship import revoke_declaration

    _, catalog = open_catalog(workspace)
    revoke_declaration(catalog, declaration_id, by)
    console.print(f"declaration {declaration_id} revoked")


@user_errors
def embargo(
    collection: CollOpt,
    by: ByOpt,
    until: Annotated[str | None, typer.Option(help="Embargo until this date (YYYY-MM-DD); omit to lift.")] = None,
    item: ItemOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Embargo an item or a whole collection until a date; nothing under embargo is used before it."""
    from hearthkit.governance.stewardship import set_embargo

    _, catalog = open_catalog(workspace)
    set_embargo(catalog, collection, _date(until, "--until"), by, item)
    console.print(f"{collection}" + (f"/{item}" if item else "") + (f" embargoed until {until}" if until
                                                                    else ": embargo lifted"))


EMBARGO_EXAMPLE = "\n\nExample: hearth data embargo -c korero -i rec_001 --until 2030-01-01 --by aroha"


@user_errors
def show(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    item: Annotated[str, typer.Argument(help="Item id (external id).")],
    purpose: Annotated[str, typer.Option(help="Purpose to evaluate the item for.")] = "research",
    requester: Annotated[str, typer.Option(help="Requester to evaluate for (protocol membership).")] = "anonymous",
    as_of: Annotated[str | None, typer.Option(help="Evaluate at this date (default today).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show one item: its metadata, labels, protocols, consent, and whether (and why not) a request may use it."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Collection, Consent, Item, ItemProtocol, Label, Protocol
    from hearthkit.governance.manifest import Request
    from hearthkit.governance.policy import compute_manifest, consent_state
    from hearthkit.store.text import SEALED_TEXT

    _, catalog = open_catalog(workspace)
    on = _date(as_of, "--as-of") or date.today()
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == collection))
        if coll is None:
            raise HearthError(f"collection {collection!r} is not in the catalog; see `hearth data ls`")
        it = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.external_id == item))
        if it is None:
            raise HearthError(f"item {item!r} is not in collection {collection}")
        console.print(f"[bold]{collection}/{item}[/] ({it.kind}, {it.media_type or '–'}, "
                      f"{it.duration_s or 0:.2f} s) sha256 {it.content_hash}", highlight=False)
        console.print(f"community {coll.community}; licence {coll.licence or '–'}; citation {coll.citation or '–'}",
                      highlight=False)
        console.print(f"speaker {it.speaker or '–'}, dialect {it.dialect or '–'}, gender {it.gender or '–'}; "
                      f"embargo {it.embargo_until or coll.embargo_until or 'none'}; text: "
                      f"{it.text or ('sealed (read only by a run)' if SEALED_TEXT in (it.meta or {}) else '–')}",
                      highlight=False)
        labels = cli_table("label id", "key", "on", "community", "text", "lang", "version", "hub id", "protocol",
                           "season", "also")
        names = dict(s.execute(select(Protocol.id, Protocol.name)).all())
        for lab in s.scalars(select(Label).where((Label.item_id == it.id) | (Label.collection_id == coll.id))
                             .order_by(Label.id)):
            labels.add_row(str(lab.id), lab.key, "item" if lab.item_id else "collection", lab.community,
                           lab.text or "–", lab.language or "–", lab.version or "–", lab.hub_id or "–",
                           names.get(lab.protocol_id, "–"),
                           f"{lab.season_from}..{lab.season_to}" if lab.season_from else "–",
                           ", ".join(lab.communities or []) or "–")
        console.print(labels)
        prots = [names[p] for p in s.scalars(select(ItemProtocol.protocol_id).where(ItemProtocol.item_id == it.id))]
        if prots:
            console.print(f"protocols: {', '.join(sorted(prots))} (sharing {it.sharing})")
        if (it.meta or {}).get("protocols") is not None:  # enforced like an assignment (docs/governance.md)
            console.print(f"protocols named by the import sheet: {it.meta['protocols']!r} (sharing {it.sharing})",
                          highlight=False, markup=False)
        from hearthkit.catalog.models import Declaration

        for d in s.scalars(select(Declaration).where(Declaration.collection_id == coll.id, (Declaration.item_id ==
                                                     it.id) | Declaration.item_id.is_(None)).order_by(Declaration.id)):
            state = f"revoked {d.revoked_at.date().isoformat()}" if d.revoked_at else "in force"
            console.print(f"declaration {d.id}: {d.kind} ({'this item' if d.item_id else 'whole collection'}) by "
                          f"{d.by} on {d.at.date().isoformat()}, {state}: {d.note or '–'}", highlight=False,
                          markup=False)
        consents = cli_table("consent id", "scope", "subject", "given by", "given", "purposes", "expires",
                             "evidence", "state")
        from datetime import UTC, datetime

        when = datetime(on.year, on.month, on.day, 23, 59, 59, tzinfo=UTC)
        for c in s.scalars(select(Consent).where(Consent.collection_id == coll.id).order_by(Consent.id)):
            if c.scope == "individual" and c.subject != it.speaker:
                continue
            consents.add_row(str(c.id), c.scope, c.subject, c.given_by, c.given_at.date().isoformat(),
                             ", ".join(c.purposes), c.expires_at.date().isoformat() if c.expires_at else "–",
                             c.evidence or "–", consent_state(c, when) or "in force")
        console.print(consents)
    man = compute_manifest(catalog, Request(purpose, requester, (collection,), on.isoformat()), only_item=item)
    if man.included:
        console.print(f"[green]included[/] for purpose {purpose}, requester {requester}, as of {on}")
    for e in man.excluded:
        console.print(f"[red]excluded[/] for purpose {purpose}, requester {requester}, as of {on}: "
                      f"{e['rule']}: {e['reason']}", highlight=False, soft_wrap=True)


SHOW_EXAMPLE = "\n\nExample: hearth data show demo-korero hemi_0003 --purpose commercial"


@user_errors
def request(
    purpose: Annotated[str, typer.Option(help="What the model is for, e.g. language_revitalization.")],
    requester: Annotated[str, typer.Option(help="The person or team asking to train.")],
    collection: Annotated[list[str], typer.Option("--collection", "-c", help="Collection (repeat).")],
    recipe: Annotated[str, typer.Option(help="Recipe the data will train, e.g. asr.")],
    as_of: Annotated[str | None, typer.Option(help="Evaluate policy at this date (default today).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ask to train: store the request with its manifest hash; pending when a steward must approve held items."""
    from hearthkit.governance.requests import create_request
    from hearthkit.recipes import REGISTRY

    if recipe not in REGISTRY:
        raise HearthError(f"--recipe {recipe!r} is not one of: {', '.join(sorted(REGISTRY))}")
    on = _date(as_of, "--as-of") or date.today()
    if on > date.today():
        raise HearthError(f"--as-of {on} is in the future; policy is evaluated today or earlier")
    _, catalog = open_catalog(workspace)
    req, man = create_request(catalog, purpose, requester, collection, recipe, on.isoformat())
    console.print(f"request {req.id}: {req.status}; {len(man.included)} items included now, "
                  f"{len(man.excluded)} excluded; manifest to approve sha256 {req.manifest_hash}")
    for e in man.excluded:
        if "needs_approval" in e:
            console.print(f"  held: {e['collection']}/{e['external_id']}: {e['reason']}", highlight=False,
                          soft_wrap=True)
    if req.backdated:  # reproduces an old manifest: it may be reviewed, never approved or trained on
        console.print(f"read-only: as of {req.as_of} is before today; such a request cannot be approved for "
                      "training (training is judged today)", highlight=False)
        return
    if req.needs:
        console.print(f"waiting for the stewards of: {', '.join(req.needs)} (`hearth approve {req.id} --by NAME`)")
    console.print(f"train it with `request.id: {req.id}` in the run config")


REQUEST_EXAMPLE = ("\n\nExample: hearth request --purpose language_revitalization --requester tech "
                   "-c demo-korero --recipe asr")


ManifestOpt = Annotated[str | None, typer.Option(help="The manifest sha256 you reviewed (as `hearth request` "
                                                     "printed); refused if the request is for another.")]


def _decide(decision: str, request_id: int, by: str, community: str | None, note: str | None,
            manifest: str | None, workspace: Path | None) -> None:
    from hearthkit.governance.requests import decide

    _, catalog = open_catalog(workspace)
    req = decide(catalog, request_id, by, decision, community, note, manifest)
    waiting = [c for c in req.needs if c not in {d[0] for d in req.decisions}]
    console.print(f"request {req.id}: {req.status}" + (f"; still waiting for {', '.join(waiting)}"
                                                        if req.status == "pending" else ""))


@user_errors
def approve(
    request_id: Annotated[int, typer.Argument(help="Request id.")],
    by: ByOpt,
    community: Annotated[str | None, typer.Option(help="Decide for this community only.")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the decision.")] = None,
    manifest: ManifestOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Approve a request for the communities you steward, bound to its manifest hash."""
    _decide("approve", request_id, by, community, note, manifest, workspace)


@user_errors
def deny(
    request_id: Annotated[int, typer.Argument(help="Request id.")],
    by: ByOpt,
    community: Annotated[str | None, typer.Option(help="Decide for this community only.")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the decision.")] = None,
    manifest: ManifestOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Deny a request; no run may train on it."""
    _decide("deny", request_id, by, community, note, manifest, workspace)


APPROVE_EXAMPLE = "\n\nExample: hearth approve 1 --by aroha"
DENY_EXAMPLE = "\n\nExample: hearth deny 1 --by aroha --note 'not for this purpose'"


@audit_app.command("verify", help="Walk the hash chain and check it against the signed head anchor kept in the "
                                  "key folder outside the workspace; report the first event edited, deleted or "
                                  "moved, a cut-off tail, a rewritten log or a forged anchor. Exit 1 when broken."
                                  "\n\nExample: hearth audit verify")
@user_errors
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(help="Head hash recorded earlier; detects a cut-off tail.")]
    = None,
    allow_unanchored: Annotated[bool, typer.Option(
        "--allow-unanchored", help="Exit 0 when the log has events but no head anchor (e.g. a log older than "
                                   "anchoring); the chain itself is still checked.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    from hearthkit.catalog.context import bind
    from hearthkit.governance.anchor import check
    from hearthkit.governance.audit import verify

    ws, catalog = open_catalog(workspace)
    bind(catalog, ws)
    v = verify(catalog)
    if not v.ok:
        console.print(f"[bold red]audit chain broken[/] at event {v.broken_seq}: {v.reason} "
                      f"({v.events} events before it verified)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if expect_head and v.head != expect_head and not _head_in_chain(catalog, expect_head):
        console.print(f"[bold red]audit chain broken[/]: head {expect_head[:12]}… is not in the chain "
                      "(events at or before it were removed or changed)", highlight=False)
        raise typer.Exit(1)
    a = check(catalog, ws)
    if a.state == "unanchored":
        console.print(f"[bold yellow]audit log UNANCHORED[/]: {a.message}", highlight=False, soft_wrap=True)
        if not allow_unanchored:
            raise typer.Exit(1)
    elif not a.ok:
        console.print(f"[bold red]audit log {a.state}[/]: {a.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"audit chain intact: {v.events} events, head {v.head}; {a.message}", highlight=False,
                  soft_wrap=True)


@audit_app.command("anchor", help="Anchor the log's current head in the key folder, replacing a missing or stale "
                                  "anchor (workspace owner only; the chain must verify first).\n\n"
                                  "Example: hearth audit anchor")
@user_errors
def audit_anchor(workspace: WorkspaceOpt = None) -> None:
    from hearthkit.catalog.context import bind
    from hearthkit.governance.anchor import reanchor
    from hearthkit.governance.audit import verify

    ws, catalog = open_catalog(workspace)
    ws.require_owner("re-anchor the audit log")
    bind(catalog, ws)
    v = verify(catalog)
    if not v.ok:
        raise HearthError(f"the chain is broken at event {v.broken_seq}; it cannot be anchored: {v.reason}")
    seq = reanchor(catalog, ws)
    console.print(f"anchored the audit log at event {seq} (head {v.head})", highlight=False)


def _head_in_chain(catalog, digest: str) -> bool:
    from hearthkit.governance.audit import events

    return any(e["hash"] == digest for e in events(catalog))


@audit_app.command("log", help="List audit events, oldest first.\n\nExample: hearth audit log --kind approval")
@user_errors
def audit_log(
    kind: Annotated[str | None, typer.Option(help="Only events of this kind.")] = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    import json

    from hearthkit.governance.audit import events

    _, catalog = open_catalog(workspace)
    if as_json:
        print_json({"events": list(events(catalog, kind))})
        return
    for e in events(catalog, kind):
        console.print(f"{e['seq']:>6} {e['at']} {e['kind']:<11} {e['actor']}: "
                      f"{json.dumps(e['data'], ensure_ascii=False, sort_keys=True)}", highlight=False,
                      markup=False, soft_wrap=True)
