"""The backend contract: small protocols; the semantics built on them live above.

A backend stores rows and bytes. Idempotency is the one rule it must enforce itself, because
only the store can make it atomic: ``append_events`` stores a batch all-or-nothing and skips
event ids it already has. Attribution windows, feature folds, release stacks and the like are
computed in the layers above, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from offerloop.backends._records import (
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    QuarantinedRecord,
    ShadowChoice,
    TransitionRecord,
)

__all__ = [
    "ArtifactStore",
    "Backend",
    "CapLedger",
    "DecisionLog",
    "DeploymentStore",
    "EventLog",
    "LoadLog",
    "ModelStore",
    "Quarantine",
    "RunLog",
]


class EventLog(Protocol):
    """Events as clients sent them, append-only. :meth:`append_events` is the one write: atomic
    per batch and idempotent by event id. Sequence numbers grow with insertion; "storage order"
    is ``seq`` order, which need not be time order."""

    # True when a reader may see a gap in sequence numbers that a transaction still in
    # flight fills later (concurrent writers commit out of order); False when every gap
    # is final. ``features._follow`` waits for such gaps.
    transient_gaps: bool

    def append_events(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store the batch atomically; return the events that were new, in batch order,
        each with its sequence number (``seq``, growing with insertion).

        Event ids already stored (or repeated within the batch) are skipped.
        """
        ...

    def events_after(self, seq: int, limit: int = 10_000) -> list[EventRecord]:
        """Stored events with ``seq`` above this one, in ``seq`` order, at most ``limit``."""
        ...

    def events_at(self, seqs: Sequence[int]) -> list[EventRecord]:
        """The stored events among these sequence numbers, in ``seq`` order."""
        ...

    def last_event_seq(self) -> int:
        """The highest sequence number stored (0: none)."""
        ...

    def iter_events(self, batch: int = 10_000) -> Iterator[EventRecord]:
        """Every stored event, in the order they were stored."""
        ...

    def player_events(self, player_id: str, until: float) -> list[EventRecord]:
        """One player's events with ``ts <= until``, oldest first."""
        ...

    def event_lags(
        self, start: float, end: float, limit: int = 50_000
    ) -> list[tuple[float, float]]:
        """``(received_at, received_at - ts)`` of the clients' events received in ``[start,
        end)`` (not the ``offer_outcome`` events offerloop writes itself), the newest ``limit``
        by ``received_at``, oldest first: how late events reach the features."""
        ...

    def purchases_for(self, decision_ids: Sequence[str]) -> list[EventRecord]:
        """Purchase events that name one of these decisions."""
        ...


class DecisionLog(Protocol):
    """Decisions as served, one row per decision id: stored once (a repeated id is skipped,
    never overwritten), later only extended (shadows appended, backfilled features merged),
    with the values logged at decision time never changed."""

    def append_decisions(
        self, decisions: Sequence[DecisionRecord], rows: Sequence[tuple[Any, ...]] = ()
    ) -> int:
        """Store decisions in one transaction; an id already stored is skipped (a journal
        replayed after a crash stores each decision once). Returns how many were new.
        ``rows``: the records as ``backends._rows.decision_row`` builds them, when the caller
        has them already (the journal: encoding a row twice is most of a batch's cost)."""
        ...

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The stored decisions among these ids, by id (one query for a batch)."""
        ...

    def decisions(
        self, campaign: str, start: float, end: float, newest: int | None = None
    ) -> list[DecisionRecord]:
        """Decisions of a campaign with ``start <= ts < end``, oldest first; with ``newest``,
        only the latest that many of them (still oldest first)."""
        ...

    def count_decisions(self, campaign: str, start: float, end: float) -> int:
        """How many decisions :meth:`decisions` would return (without reading them)."""
        ...

    def add_shadows(self, values: Mapping[str, Sequence[ShadowChoice]]) -> int:
        """Append shadow scores to decisions (by id), scored after the answer; returns how
        many decisions changed."""
        ...

    def add_backfill(self, values: Mapping[str, Mapping[str, Any]]) -> int:
        """Merge backfilled feature values into decisions (by id); returns how many changed."""
        ...


class ModelStore(Protocol):
    """Model version records: a version is stored once and never replaced or reused."""

    def next_model_number(self) -> int:
        """A number never returned before (names new versions)."""
        ...

    def put_model(self, model: ModelRecord) -> None:
        """Store a new version's record; Conflict if that version exists already."""
        ...

    def get_model(self, version: str) -> ModelRecord | None:
        """The record of ``version``, or None."""
        ...

    def list_models(self) -> list[ModelRecord]:
        """Every version's record, oldest first (by ``created_at``, then version)."""
        ...


class ArtifactStore(Protocol):
    """Model artifacts by name, as bytes. A write is atomic: a reader sees the whole artifact
    or none of it, never part of one."""

    def put_artifact(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` atomically, replacing what was there; ValueError for a name
        that is not a plain file name (empty, with ``/``, or starting with a dot)."""
        ...

    def get_artifact(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, or None."""
        ...


class DeploymentStore(Protocol):
    """Each campaign's deployments and the transitions that led to them. They change only through
    :meth:`replace_deployments`: all at once and only if the generation is still the one read,
    so concurrent writers never lose each other's changes."""

    def deployments(self, campaign: str) -> list[DeploymentRecord]:
        """A campaign's current deployments, oldest first (by ``since``, then version)."""
        ...

    def replace_deployments(
        self,
        campaign: str,
        expected_generation: int,
        deployments: Sequence[DeploymentRecord],
        transitions: Sequence[TransitionRecord],
    ) -> bool:
        """Atomically swap a campaign's deployments and record transitions.

        Returns False (and changes nothing) if the generation moved since it was read.
        """
        ...

    def transitions(self, campaign: str) -> list[TransitionRecord]:
        """Every recorded transition of a campaign, oldest first."""
        ...

    def generation(self) -> int:
        """A counter that moves whenever any deployment changes."""
        ...


class LoadLog(Protocol):
    """When each file of a batch feature source was first loaded; a later load keeps that time."""

    def record_load(self, source: str, file_key: str, loaded_at: float) -> float:
        """Record when a batch file was first loaded; return the recorded time (idempotent)."""
        ...

    def loads(self, source: str) -> list[tuple[str, float]]:
        """(file key, loaded at) of a batch source, in load order."""
        ...


class Quarantine(Protocol):
    """Records the store refused, kept (once per kind and key) for an operator to look at."""

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> int:
        """Keep records the store refused (idempotent on kind + key); returns how many were
        new. Must accept any payload: it is stored as ASCII-only JSON text."""
        ...

    def quarantined(self, limit: int = 1000) -> list[QuarantinedRecord]:
        """The newest ``limit`` quarantined records, oldest first."""
        ...


class RunLog(Protocol):
    """Pipeline run records, and the pipeline lock shared by every process using the store."""

    def put_run(self, doc: Mapping[str, Any]) -> None:
        """Insert or replace a pipeline run record (keys ``id`` and ``campaign``)."""
        ...

    def runs(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Run records in creation order (optionally of one campaign)."""
        ...

    def run_lock(self, name: str = "pipeline") -> AbstractContextManager[None]:
        """Hold a named lock for the block across every process (and machine) that uses
        this store; ``Conflict`` at once if it is held. A holder that dies releases it."""
        ...


class CapLedger(Protocol):
    """What each player was shown (and bought), for frequency caps and purchase limits
    (``campaigns.Cap``): entries under keys (an offer, a bundle, a message or a campaign, as
    the caller names them) at times. :meth:`take` is the one write, and it is atomic per
    player across every process using the store: what ``choose`` sees cannot change before
    what it picked is recorded, so concurrent requests of one player are served one after
    another and a cap can never be passed."""

    def shows(self, player_id: str, since: float) -> list[tuple[str, float]]:
        """The player's entries ``(key, ts)`` with ``ts > since``."""
        ...

    def take(
        self,
        player_id: str,
        since: float,
        choose: Callable[[list[tuple[str, float]]], Sequence[tuple[str, float]]],
        now: float,
    ) -> list[tuple[str, float]]:
        """Atomically for the player: read its entries with ``ts > since``, call ``choose``
        with them (once), record one entry at ``now`` for each ``(key, window)`` it returns,
        and return those. Entries of a key older than the longest window named for it may be
        forgotten; other keys' entries are kept. An exception from ``choose`` records
        nothing."""
        ...


class Backend(
    CapLedger,
    EventLog,
    DecisionLog,
    ModelStore,
    ArtifactStore,
    DeploymentStore,
    LoadLog,
    Quarantine,
    RunLog,
    Protocol,
):
    """Everything offerloop stores, behind one object that every thread of a process shares;
    ``name`` says which implementation it is (``sqlite``, ``postgres``)."""

    name: str

    def close(self) -> None:
        """Release connections and other resources; the backend is unusable afterwards."""
        ...
