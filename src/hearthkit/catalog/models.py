"""SQLAlchemy models of the catalog (VISION §4 vocabulary)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware now, the catalog's only clock."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""


class Collection(Base):
    """A set of items a community holds authority over, with licence and citation."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    community: Mapped[str] = mapped_column(String(200))
    licence: Mapped[str | None] = mapped_column(String(200))
    citation: Mapped[str | None] = mapped_column(Text)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    embargo_until: Mapped[date | None] = mapped_column(Date)  # nothing in it is used before this date
    # Mukurtu browsing access: open | registered | community | protocol. Unset reads as community (deny by default).
    access: Mapped[str] = mapped_column(String(20), default="community", server_default="community")

    items: Mapped[list[Item]] = relationship(back_populates="collection")


class Item(Base):
    """One recording, text or tile: content hash in the store plus its metadata."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("collection_id", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(20))  # audio | text | raster
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str | None] = mapped_column(String(50))
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    speaker: Mapped[str | None] = mapped_column(String(200), index=True)
    dialect: Mapped[str | None] = mapped_column(String(200))
    gender: Mapped[str | None] = mapped_column(String(50))
    text: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    embargo_until: Mapped[date | None] = mapped_column(Date)  # not used before this date
    sharing: Mapped[str] = mapped_column(String(3), default="all", server_default="all")  # protocols: all | any
    access: Mapped[str | None] = mapped_column(String(20))  # browsing access of this item; None: the collection's

    collection: Mapped[Collection] = relationship(back_populates="items")
    labels: Mapped[list[Label]] = relationship(back_populates="item")


class Label(Base):
    """A Local Contexts TK/BC label or notice applied to an item (or a whole collection)."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id"), index=True)
    key: Mapped[str] = mapped_column(String(100))  # e.g. tk:secret_sacred, as the Hub spells label_type
    community: Mapped[str] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)  # communities reword labels
    language: Mapped[str | None] = mapped_column(String(35))
    version: Mapped[str | None] = mapped_column(String(20))
    hub_id: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # free-form extras from importers
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    protocol_id: Mapped[int | None] = mapped_column(ForeignKey("protocols.id"))  # protocol labels: whose protocol
    season_from: Mapped[str | None] = mapped_column(String(5))  # tk:seasonal window, "MM-DD" inclusive
    season_to: Mapped[str | None] = mapped_column(String(5))
    communities: Mapped[list | None] = mapped_column(JSON)  # multiple_community: every community that must approve
    agreement: Mapped[str | None] = mapped_column(Text)  # commercial labels: reference to the community agreement

    item: Mapped[Item | None] = relationship(back_populates="labels")


class Consent(Base):
    """Consent: collective (the community, for a collection) or individual (a speaker)."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    scope: Mapped[str] = mapped_column(String(20))  # collective | individual
    subject: Mapped[str] = mapped_column(String(200))  # community name or speaker id
    given_by: Mapped[str] = mapped_column(String(200))
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    purposes: Mapped[list] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evidence: Mapped[str | None] = mapped_column(Text)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """A training run: its request, manifest hash and status."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    recipe: Mapped[str] = mapped_column(String(50))
    purpose: Mapped[str] = mapped_column(String(50))
    requester: Mapped[str] = mapped_column(String(200))
    manifest_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="created")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # issue 20: the pretrained base it fine-tuned (lineage/base.py BaseRef.record(): name, content_hash, terms)
    base: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class RunItem(Base):
    """An item in a run's manifest: the index that answers "which models learned from this item?"."""

    __tablename__ = "run_items"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True, index=True)


class Model(Base):
    """A trained model registered with its run, parent, restrictions, attribution, metrics and status."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    path: Mapped[str] = mapped_column(Text)
    card_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active|needs-retrain|superseded|revoked
    restrictions: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    recipe: Mapped[str | None] = mapped_column(String(50))
    manifest_hash: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), index=True)
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    attribution: Mapped[list] = mapped_column(JSON, default=list)
    status_reason: Mapped[str | None] = mapped_column(Text)


class ModelParent(Base):
    """A further parent of a model besides `Model.parent_id` (e.g. the mt model an st decoder started from)."""

    __tablename__ = "model_parents"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(50), primary_key=True)  # the config key: decoder_from, …


class Withdrawal(Base):
    """A recorded withdrawal of consent: one item, a speaker, or a whole collection."""

    __tablename__ = "withdrawals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    scope: Mapped[str] = mapped_column(String(20))  # item | speaker | collection
    subject: Mapped[str] = mapped_column(String(500))  # external id, speaker id or collection name
    by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    items: Mapped[int] = mapped_column(Integer, default=0)


class Community(Base):
    """A community that holds authority over collections; named as in Collection.community."""

    __tablename__ = "communities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Person(Base):
    """A person known to the catalog: steward, member, researcher or partner of communities."""

    __tablename__ = "people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # the handle used as requester / --by
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    """A person's role in a community (one row per role)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("community_id", "person_id", "role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # steward | member | researcher | partner
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Protocol(Base):
    """A Mukurtu-style cultural protocol: a named group of people a community defines."""

    __tablename__ = "protocols"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProtocolMember(Base):
    """A person inside a protocol."""

    __tablename__ = "protocol_members"
    __table_args__ = (UniqueConstraint("protocol_id", "person_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocols.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)


class ItemProtocol(Base):
    """An item placed under a protocol (an item may sit under several; Item.sharing says any or all)."""

    __tablename__ = "item_protocols"
    __table_args__ = (UniqueConstraint("item_id", "protocol_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocols.id"), index=True)


class AccessRequest(Base):
    """A training request: purpose, requester, collections, recipe; the manifest hash stewards approve."""

    __tablename__ = "requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(50))
    requester: Mapped[str] = mapped_column(String(200))
    collections: Mapped[list] = mapped_column(JSON)
    recipe: Mapped[str] = mapped_column(String(50))
    as_of: Mapped[str] = mapped_column(String(10))  # ISO date the policy is evaluated at
    manifest_hash: Mapped[str] = mapped_column(String(64))  # the manifest as it will be once every approval is in
    needs: Mapped[list] = mapped_column(JSON, default=list)  # communities whose stewards must approve
    status: Mapped[str] = mapped_column(String(20))  # pending | approved | denied | not_required
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Approval(Base):
    """A steward's decision on a request for one community, bound to the manifest hash they saw."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "community"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    community: Mapped[str] = mapped_column(String(200))
    steward: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(10))  # approve | deny
    manifest_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """One link of the append-only audit chain: hash = sha256(prev_hash + canonical event)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO timestamp, stored as text so the hashed bytes never change
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Declaration(Base):
    """A steward's declaration about an item or a whole collection, e.g. that no identifiable person is in it."""

    __tablename__ = "declarations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)  # None: the whole collection
    kind: Mapped[str] = mapped_column(String(40))  # no_identifiable_person
    by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExternalModel(Base):
    """A model folder from outside this catalog that a steward registered, with the restrictions it carries."""

    __tablename__ = "external_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 over the folder's weight files
    path: Mapped[str] = mapped_column(Text)
    community: Mapped[str] = mapped_column(String(200))
    restrictions: Mapped[list] = mapped_column(JSON, default=list)
    registered_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Account(Base):
    """A person's login: an argon2 password hash, lockout state and whether the password is one-time."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    must_change: Mapped[bool] = mapped_column(Boolean, default=True)  # one-time password until changed
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser session, stored by the hash of its id so it can be revoked (sign out, lock)."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A scoped, revocable API token for scripts; only its sha256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSON, default=list)  # allowlist, e.g. ["read", "transcribe"]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BaseModelRecord(Base):
    """A pretrained checkpoint folder (Hugging Face format) registered by content hash, with its terms (issue 20)."""

    __tablename__ = "base_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 over the folder's files
    path: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(100))  # config.json model_type, e.g. wav2vec2, m2m_100
    licence: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    labels: Mapped[list] = mapped_column(JSON, default=list)  # e.g. ["bc:non_commercial"]
    training_data: Mapped[str | None] = mapped_column(Text)  # None: undeclared (the card carries a notice)
    registered_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
