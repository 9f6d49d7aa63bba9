"""Tables shared by the engine, the workers and the dashboard.

Schema changes go through Alembic (db/migrations); bump a migration whenever this file changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    config: Mapped[dict] = mapped_column(JSON)
    # Copies of the config fields people filter and group by (the JSON stays the source of truth).
    dataset: Mapped[str] = mapped_column(String(32), index=True)
    encoder: Mapped[str] = mapped_column(String(32), index=True)
    optimizer: Mapped[str] = mapped_column(String(16), index=True)
    batch_size: Mapped[int] = mapped_column(Integer, index=True)
    subset_size: Mapped[int | None] = mapped_column(Integer, index=True)
    epochs: Mapped[int] = mapped_column(Integer)
    sweep_id: Mapped[str | None] = mapped_column(String(64), index=True)

    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    device: Mapped[str | None] = mapped_column(String(64))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    # Where the run executes, in words (db/executor.py): a local worker's slot, or a Ray job and its node.
    executor: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries_left: Mapped[int] = mapped_column(Integer, default=1)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    # Progress, for the dashboard's progress bars.
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    # What a running run is doing now (db.status.PHASES); None when it is not running.
    phase: Mapped[str | None] = mapped_column(String(16))

    # Summary of results (None until known).
    final_loss: Mapped[float | None] = mapped_column(Float)
    knn_top1: Mapped[float | None] = mapped_column(Float)
    linear_loss: Mapped[float | None] = mapped_column(Float)
    linear_top1: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    subset_indices: Mapped[list | None] = mapped_column(JSON)

    # Annotations people add afterwards (db/annotations.py): sorted distinct tags, free text.
    tags: Mapped[list | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    __tablename__ = "metrics"
    # One value per (run, name, step): a resumed run that replays a step overwrites, never duplicates.
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)  # unix seconds


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # host:pid:start
    hostname: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    devices: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The worker's --stale-after (None: registered before migration 0002; the default applies).
    stale_after_s: Mapped[float | None] = mapped_column(Float)


class LabMeta(Base):
    """Facts about the database itself; today one: `database_id` (see db/identity.py)."""

    __tablename__ = "lab_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


runs = Run.__table__
metrics = Metric.__table__
workers = Worker.__table__
lab_meta = LabMeta.__table__
