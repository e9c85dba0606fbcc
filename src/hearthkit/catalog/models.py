"""SQLAlchemy models of the catalog (VISION §4 vocabulary)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
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
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # e.g. season window
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

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
