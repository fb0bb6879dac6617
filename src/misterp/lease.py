"""One run at a time per wave or media-mix run: a lease on its folder's ``lease.json``.

Two runs of one wave (a cron run and a manual re-run, or a second ``misterp run`` while the
first still fits) would stage, fit and publish over each other, and a manifest could end up
describing estimates another run wrote. A run takes the wave's lease before it stages and gives
it back after it publishes, also when it fails; a second run is refused with who holds it. The
holder writes a heartbeat from a background thread; a run that died keeps its lease until no
heartbeat came for ``stale_after`` seconds, when the next run takes it over (a person can pass
``--force`` sooner). A lease that was taken over records the run it took over and when: the
fits that run finished before are kept (a killed run's work is not redone), anything it wrote
after is never read as current.

Object stores offer no compare-and-swap through fsspec, so taking the lease follows Fischer's
timed mutual exclusion: read the lease, write ours, wait ``settle`` seconds, read it back, and
hold it only if what is read back is still ours. S3 and local folders are read-after-write
consistent, and that excludes a second run as long as no run takes longer than ``settle``
between reading the lease and writing it. A longer stall (a frozen VM, a request hanging for
seconds) can still let two runs both believe they hold it. Fencing bounds the damage: a fit
checks the lease before it writes its record, publication checks it before the manifest, and
records of a taken-over run are ignored. What remains is a record or manifest written in the
moment between such a check and the write; the next run or re-run repairs it. Staleness compares
the holder's heartbeat time with the reader's clock, so hosts' clocks must agree to well within
``stale_after`` (NTP keeps them within a second).

The lease is on a folder of the store, not on surveys: ``wave`` is the leased folder (a wave
id, or ``mmm/RUN`` for a media-mix run), and ``subject`` names it in messages ("wave 2026-10",
"media-mix run r1"); the stored record is the same for both.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import ClassVar

from pydantic import AwareDatetime, Field

from misterp.records import Record, RecordError, VersionedRecord
from misterp.storage import ResultStore

__all__ = [
    "DEFAULT_SETTLE",
    "DEFAULT_STALE_AFTER",
    "LEASE_FILE",
    "Lease",
    "LeaseLost",
    "LeaseRecord",
    "RunLocked",
    "acquire_lease",
    "check_holder",
    "lease_path",
    "new_run_id",
    "read_lease",
    "taken_over_runs",
]

logger = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
#: Seconds without a heartbeat after which a lease is stale and the next run takes it over.
#: Long enough that a slow store or a busy flow process never loses a live lease (five
#: heartbeats fit in it), short enough that a wave whose run was killed waits minutes, not hours.
DEFAULT_STALE_AFTER = 300.0
#: Seconds between writing the lease and reading it back (see the module docstring): far above
#: one read and one write of a small object, and small beside a wave's minutes.
DEFAULT_SETTLE = 1.0
#: Heartbeats per ``stale_after``: one lost or slow heartbeat never makes a live lease stale.
HEARTBEATS_PER_STALE = 5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def lease_path(wave: str) -> str:
    """Where a wave's lease lives, relative to the store root."""
    return f"{wave}/{LEASE_FILE}"


def new_run_id() -> str:
    """A fresh run id: unique per run, short enough to read in a log line."""
    return uuid.uuid4().hex[:16]


class TakenOver(Record):
    """A run whose lease of the wave was taken over, and when: what it wrote later is void."""

    run_id: str
    at: AwareDatetime


class LeaseRecord(VersionedRecord):
    """``OUTPUT/WAVE/lease.json``: which run holds the wave, since when, and its last heartbeat.

    A released lease is kept (with ``released_at``) rather than deleted, so the list of
    taken-over runs survives from one run to the next.
    """

    kind: ClassVar[str] = "wave lease"
    wave: str
    run_id: str
    host: str
    pid: int
    #: Where to look the run up, e.g. its Prefect flow run.
    note: str | None = None
    started_at: AwareDatetime
    heartbeat_at: AwareDatetime
    stale_after: float = Field(gt=0)
    #: Runs whose lease was taken over (stale or forced), oldest first: what they wrote after
    #: the takeover is void; what they finished before it stays a result.
    taken_over: tuple[TakenOver, ...] = ()
    released_at: AwareDatetime | None = None

    @property
    def taken_over_ids(self) -> tuple[str, ...]:
        """The run ids of ``taken_over``, oldest first."""
        return tuple(entry.run_id for entry in self.taken_over)

    @property
    def held(self) -> bool:
        """True until the holder releases it."""
        return self.released_at is None

    @property
    def stale_at(self) -> dt.datetime:
        """When the lease goes stale unless the holder writes another heartbeat."""
        return self.heartbeat_at + dt.timedelta(seconds=self.stale_after)

    def is_stale(self, now: dt.datetime) -> bool:
        """True when no heartbeat came within ``stale_after`` seconds."""
        return now >= self.stale_at

    def describe(self) -> str:
        """E.g. ``run 3f2a... on host pod-7 (pid 12; prefect flow run ...)``."""
        where = f"pid {self.pid}" + (f"; {self.note}" if self.note else "")
        return f"run {self.run_id} on host {self.host} ({where})"


class RunLocked(RuntimeError):
    """Another live run holds the wave's lease; ``holder`` is its lease (None if unreadable)."""

    def __init__(self, message: str, wave: str, holder: LeaseRecord | None) -> None:
        super().__init__(message)
        self.message = message
        self.wave = wave
        self.holder = holder

    def __reduce__(self) -> tuple[type[RunLocked], tuple[str, str, LeaseRecord | None]]:
        """Pickle with every argument: raised in a worker, it reaches the run intact."""
        return (type(self), (self.message, self.wave, self.holder))


class LeaseLost(RuntimeError):
    """A run no longer holds the wave's lease: another run took it over, or it was released.

    Whatever this run would still write (a fit record, the manifest) is refused.
    """

    def __init__(self, message: str, wave: str, run_id: str, holder: LeaseRecord | None) -> None:
        super().__init__(message)
        self.message = message
        self.wave = wave
        self.run_id = run_id
        self.holder = holder

    def __reduce__(self) -> tuple[type[LeaseLost], tuple[str, str, str, LeaseRecord | None]]:
        """Pickle with every argument: a fit worker's refusal reaches its run intact."""
        return (type(self), (self.message, self.wave, self.run_id, self.holder))


def read_lease(store: ResultStore, wave: str) -> LeaseRecord | None:
    """The wave's lease, or None if no run ever took one; ``RecordError`` if unreadable."""
    path = lease_path(wave)
    if not store.exists(path):
        return None
    return LeaseRecord.from_json(store.read_bytes(path), store.uri(path))


def _subject(wave: str, subject: str | None) -> str:
    """How messages name the leased folder: ``wave 2026-10`` unless the caller names it."""
    return subject or f"wave {wave}"


def _it(subject: str | None) -> str:
    """``the wave`` in the tracker's messages, ``it`` where the caller named the subject."""
    return "the wave" if subject is None else "it"


def _locked_message(
    store: ResultStore, holder: LeaseRecord, now: dt.datetime, subject: str | None = None
) -> str:
    silent = (now - holder.heartbeat_at).total_seconds()
    minutes = holder.stale_after / 60
    return (
        f"{_subject(holder.wave, subject)} in {store.root_uri} is being run by "
        f"{holder.describe()}, "
        f"started {_when(holder.started_at)}, last heartbeat {_when(holder.heartbeat_at)} "
        f"({silent:.0f} s ago). Wait for that run to finish. If it is dead (its pod or "
        f"process is gone), run again with --force to take {_it(subject)} over, or wait until "
        f"{_when(holder.stale_at)}: after {minutes:g} minutes without a heartbeat the lease is "
        "stale and the next run takes it over."
    )


def acquire_lease(
    store: ResultStore,
    wave: str,
    *,
    run_id: str | None = None,
    force: bool = False,
    stale_after: float = DEFAULT_STALE_AFTER,
    settle: float = DEFAULT_SETTLE,
    heartbeat: bool = True,
    note: str | None = None,
    subject: str | None = None,
) -> Lease:
    """Take the wave's lease, or raise ``RunLocked`` naming the live run that holds it.

    A released lease is free. A stale one (no heartbeat for its ``stale_after``) is taken over,
    and so is a live one with ``force``; the run taken over is added to ``taken_over``.

    Parameters
    ----------
    store, wave
        The results root and the wave to lease.
    run_id
        This run's id, stored in its fit records and manifest; default: a fresh one.
    force
        Take the lease over even from a live-looking run (that run's later writes are refused).
    stale_after
        Seconds without a heartbeat after which this lease may be taken over.
    settle
        Seconds between writing the lease and confirming it (see the module docstring).
    heartbeat
        Start a daemon thread that writes a heartbeat every ``stale_after / 5`` seconds.
    note
        Where to look this run up (shown to a run that finds the wave locked).
    subject
        How messages name what is leased; default ``wave WAVE``.

    Raises
    ------
    RunLocked
        Another live run holds the lease, or took it in the same moment.
    """
    run_id = run_id or new_run_id()
    named = _subject(wave, subject)
    now = _now()
    try:
        current = read_lease(store, wave)
    except RecordError as exc:
        if not force:
            raise RunLocked(
                f"{exc}. If no run of {named} is running, run again with --force to "
                "replace the lease.",
                wave,
                None,
            ) from exc
        logger.warning("replacing the unreadable lease of %s (--force): %s", named, exc)
        current = None
    taken_over: tuple[TakenOver, ...] = ()
    if current is not None:
        taken_over = current.taken_over
        if current.held and current.run_id != run_id:
            if not (force or current.is_stale(now)):
                raise RunLocked(_locked_message(store, current, now, subject), wave, current)
            logger.warning(
                "%s: taking over the %s lease of %s (last heartbeat %s)",
                named,
                "live" if not current.is_stale(now) else "stale",
                current.describe(),
                _when(current.heartbeat_at),
            )
            taken_over = (*taken_over, TakenOver(run_id=current.run_id, at=now))
    record = LeaseRecord(
        wave=wave,
        run_id=run_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        note=note,
        started_at=now,
        heartbeat_at=now,
        stale_after=stale_after,
        taken_over=taken_over,
    )
    store.write_bytes(lease_path(wave), record.to_json())
    if settle > 0:
        time.sleep(settle)
    try:
        confirmed = read_lease(store, wave)
    except RecordError as exc:
        raise RunLocked(f"{exc}; another run is writing the lease, try again", wave, None) from exc
    if confirmed is None or confirmed.run_id != run_id:
        holder = f" by {confirmed.describe()}" if confirmed is not None else ""
        raise RunLocked(
            f"{named} in {store.root_uri} was taken{holder} while run {run_id} took it; "
            "two runs started at the same moment. Run again once the other run has finished.",
            wave,
            confirmed,
        )
    lease = Lease(store, confirmed, subject=subject)
    logger.info("%s: lease taken by %s", named, confirmed.describe())
    if heartbeat:
        lease.start_heartbeat()
    return lease


def check_holder(
    store: ResultStore, wave: str, run_id: str, subject: str | None = None
) -> LeaseRecord:
    """The wave's lease if ``run_id`` holds it; otherwise raise ``LeaseLost``.

    Fit workers (other processes and pods) call this with the run id they were given, before
    they write, so a run that was taken over cannot overwrite the new run's results.
    ``subject`` names the leased folder in messages (default ``wave WAVE``).
    """
    named = _subject(wave, subject)
    try:
        current = read_lease(store, wave)
    except RecordError as exc:
        raise LeaseLost(
            f"run {run_id} cannot confirm it holds {named}: {exc}", wave, run_id, None
        ) from exc
    if current is None:
        raise LeaseLost(
            f"run {run_id} does not hold {named}: {store.uri(lease_path(wave))} does not "
            f"exist ({_it(subject)} was never leased, or the lease was deleted); run "
            f"{_it(subject)} again",
            wave,
            run_id,
            None,
        )
    if current.run_id != run_id:
        raise LeaseLost(
            f"run {run_id} lost {named} to {current.describe()}, which took it over at "
            f"{_when(current.started_at)}; this run's results are refused, that run publishes "
            f"{_it(subject)}",
            wave,
            run_id,
            current,
        )
    if not current.held:
        released = _when(current.released_at) if current.released_at else "?"
        raise LeaseLost(
            f"run {run_id} released {named} at {released} and may no longer write to it",
            wave,
            run_id,
            current,
        )
    return current


def taken_over_runs(store: ResultStore, wave: str) -> dict[str, dt.datetime]:
    """Runs whose lease of the wave was taken over, and when: later records of theirs are void.

    A record such a run wrote before the takeover is a finished fit and stays a result (a
    killed run's work is kept); one written after it could only come from an orphan that
    missed the fence, and is never read. An unreadable lease is logged and treated as naming
    none, as an unreadable fit record is.
    """
    try:
        current = read_lease(store, wave)
    except RecordError as exc:
        logger.warning("%s", exc)
        return {}
    if current is None:
        return {}
    return {entry.run_id: entry.at for entry in current.taken_over}


class Lease:
    """A held lease: heartbeat it, check it before writing, release it when done.

    Use it as a context manager so that it is released also when the run fails::

        with acquire_lease(store, wave) as lease:
            ...  # stage, fit with run_id=lease.run_id, publish
    """

    def __init__(self, store: ResultStore, record: LeaseRecord, subject: str | None = None) -> None:
        self.store = store
        self.record = record
        #: How messages name the leased folder (``wave WAVE`` by default).
        self.subject = _subject(record.wave, subject)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False
        #: Set by the heartbeat thread when it found the lease taken over.
        self.lost: LeaseLost | None = None

    def __repr__(self) -> str:
        return f"Lease({self.wave!r}, run_id={self.run_id!r})"

    @property
    def wave(self) -> str:
        """The leased wave."""
        return self.record.wave

    @property
    def run_id(self) -> str:
        """The holder's run id (stored in its fit records and manifest)."""
        return self.record.run_id

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this run still holds the lease."""
        check_holder(self.store, self.wave, self.run_id, self.subject)

    def heartbeat(self) -> LeaseRecord:
        """Write a fresh heartbeat; ``LeaseLost`` if another run took the lease over."""
        with self._lock:
            if self._released:
                raise LeaseLost(
                    f"run {self.run_id} released {self.subject}", self.wave, self.run_id, None
                )
            current = check_holder(self.store, self.wave, self.run_id, self.subject)
            record = current.model_copy(update={"heartbeat_at": _now()})
            self.store.write_bytes(lease_path(self.wave), record.to_json())
            self.record = record
            return record

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Heartbeat from a daemon thread every ``interval`` seconds until ``release``."""
        if self._thread is not None:
            return
        every = interval if interval is not None else self.record.stale_after / HEARTBEATS_PER_STALE
        self._thread = threading.Thread(
            target=self._beat, args=(every,), name=f"misterp-lease-{self.wave}", daemon=True
        )
        self._thread.start()

    @property
    def heartbeating(self) -> bool:
        """True while the heartbeat thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.heartbeat()
            except LeaseLost as exc:
                self.lost = exc
                logger.error("%s", exc)
                return
            except Exception as exc:  # a store hiccup: the next heartbeat may get through
                logger.warning(
                    "heartbeat of %s failed (%s: %s)", self.subject, type(exc).__name__, exc
                )
                logger.debug("heartbeat of %s failed", self.subject, exc_info=True)

    def release(self) -> bool:
        """Stop the heartbeat and mark the lease released; False if this run no longer held it.

        Never raises on a lost lease: release runs on the way out of a failed run too, and must
        not hide that run's own error.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            if self._released:
                return False
            self._released = True
            try:
                current = check_holder(self.store, self.wave, self.run_id, self.subject)
                now = _now()
                record = current.model_copy(update={"heartbeat_at": now, "released_at": now})
                self.store.write_bytes(lease_path(self.wave), record.to_json())
            except LeaseLost as exc:
                logger.warning("not releasing: %s", exc)
                return False
            except Exception as exc:  # the store is unreachable: the lease goes stale by itself
                # One line at the default level: the run's own outcome is what a reader needs;
                # the traceback is for whoever debugs the store.
                logger.warning(
                    "could not release the lease of %s (%s: %s); it goes stale at %s",
                    self.subject,
                    type(exc).__name__,
                    exc,
                    _when(self.record.stale_at),
                )
                logger.debug("release of the lease of %s failed", self.subject, exc_info=True)
                return False
            self.record = record
        logger.info("%s: lease released by run %s", self.subject, self.run_id)
        return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
