"""One decoded original per image per agent-loop worker, shared by every trajectory that zooms into it.

veRL runs all ``rollout.n`` trajectories of a prompt in one agent-loop worker process (and the zoom tool is loaded
once per worker), so the 8 rollouts of a prompt would each decode the same 8K original (about 100 MB and 0.6 s
each). :class:`OriginalCache` keeps one decoded copy per image identity while any trajectory holds it:

- keyed by identity: a file's resolved path with its device, inode, size and mtime (an edited file is a new
  image), or a digest of the row's ``image_bytes``;
- concurrent first calls share one decode (the others await it);
- reference counted: a trajectory holds its copy until the agent loop releases it at the end of the rollout, and
  the copy is dropped when the last holder releases it;
- every copy it hands out is one it holds and counts (:attr:`OriginalCache.held_bytes`), whatever its size;
- bounded: a new image starts decoding only when the room left under ``budget_bytes`` takes the largest original
  seen so far for every decode under way (the whole budget before the first), or when the cache holds and decodes
  nothing. So an image larger than the budget is held alone: while it is held no other image starts, and its
  concurrent users share its one decode. A zoom that finds no room waits for a release, within ``timeout_s``.

Decoding runs on a small thread pool and every wait (for room and for the decode) is bounded by ``timeout_s``: a
stuck read (a network file system, say), or holders that keep the budget full for longer, fail the zoom, never the
rollout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from PIL import Image

logger = logging.getLogger(__name__)

#: Threads decoding originals per worker process; decoding releases the GIL in Pillow's C code.
DECODE_THREADS = 4


def image_nbytes(image: Image.Image) -> int:
    """Bytes a decoded image occupies (width x height x bands)."""
    return image.width * image.height * len(image.getbands())


@dataclass
class Held:
    """A trajectory's reference to a decoded original; give it back with :meth:`OriginalCache.release`."""

    key: Hashable
    image: Image.Image
    released: bool = field(default=False, compare=False)


@dataclass
class _Entry:
    image: Image.Image
    nbytes: int
    refs: int


@dataclass
class _Decode:
    """A decode under way; the acquirers ``waiting`` for it become the holders of its entry."""

    future: concurrent.futures.Future
    waiting: int = 0
    finished: bool = False


class OriginalCache:
    """Decoded originals shared between the trajectories of one worker process (see the module doc)."""

    def __init__(self, budget_bytes: int, timeout_s: float) -> None:
        if budget_bytes < 0 or timeout_s <= 0:
            raise ValueError(f"need budget_bytes >= 0 and timeout_s > 0, got {budget_bytes}, {timeout_s}")
        self.budget_bytes = int(budget_bytes)
        self.timeout_s = float(timeout_s)
        self.decodes = 0  # decodes started, for diagnostics and the benchmark
        self._largest = 0  # bytes of the largest original decoded: the room each decode under way reserves
        self._entries: dict[Hashable, _Entry] = {}
        self._decoding: dict[Hashable, _Decode] = {}
        self._room_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._lock = threading.RLock()  # a done future runs its callback at once, lock held
        self._executor = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="zoom-decode")

    @property
    def held_bytes(self) -> int:
        """Bytes of every decoded original handed out and not yet released."""
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    async def acquire(self, key: Hashable, decode: Callable[[], Image.Image]) -> Held:
        """The decoded image for ``key``, decoding it with ``decode`` unless held or being decoded already.

        Raises whatever ``decode`` raised, or ``TimeoutError`` when room and the decode took over ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            while True:
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None:
                        entry.refs += 1
                        return Held(key, entry.image)
                    job = self._decoding.get(key)
                    if job is None and self._has_room():
                        job = self._start(key, decode)
                    if job is not None:
                        job.waiting += 1
                        break
                    room = loop.create_future()
                    self._room_waiters.append((loop, room))
                await room
            try:
                image = await asyncio.shield(asyncio.wrap_future(job.future))
            except BaseException:
                self._give_up(key, job)
                raise
        return Held(key, image)  # counted among the entry's holders when the decode finished

    def share(self, held: Held) -> Held:
        """Another reference to ``held``'s image (a branch that adopts its leader's trajectory)."""
        with self._lock:
            entry = self._entries.get(held.key)
            if entry is not None and entry.image is held.image:
                entry.refs += 1
            else:  # ``held`` was released already: the image is held again, and counted
                self._entries[held.key] = _Entry(held.image, image_nbytes(held.image), refs=1)
        return Held(held.key, held.image)

    def release(self, held: Held) -> None:
        """Give back one reference; the decoded copy goes when nobody holds it. Releasing twice is a no-op."""
        if held.released:
            return
        held.released = True
        with self._lock:
            entry = self._entries.get(held.key)
            if entry is None or entry.image is not held.image:
                return
            entry.refs -= 1
            if entry.refs <= 0:
                del self._entries[held.key]
                self._wake_room_waiters()

    def _has_room(self) -> bool:
        """Whether a new image may start decoding (lock held): see the module doc."""
        if not self._entries and not self._decoding:
            return True
        reserve = self._largest or self.budget_bytes
        held = sum(e.nbytes for e in self._entries.values())
        return held + (len(self._decoding) + 1) * reserve <= self.budget_bytes

    def _start(self, key: Hashable, decode: Callable[[], Image.Image]) -> _Decode:
        job = _Decode(self._executor.submit(decode))
        self.decodes += 1
        self._decoding[key] = job
        job.future.add_done_callback(lambda f, k=key, j=job: self._finish(k, j))
        return job

    def _finish(self, key: Hashable, job: _Decode) -> None:
        """A decode ended (on its thread): its image becomes an entry held by everyone still waiting for it."""
        with self._lock:
            job.finished = True
            if self._decoding.get(key) is job:
                del self._decoding[key]
            image = None if job.future.cancelled() or job.future.exception() else job.future.result()
            if image is not None and job.waiting > 0:
                nbytes = image_nbytes(image)
                self._largest = max(self._largest, nbytes)
                if nbytes > self.budget_bytes:
                    logger.info("original %s (%d bytes) exceeds the cache budget: held alone", key, nbytes)
                self._entries[key] = _Entry(image, nbytes, refs=job.waiting)
            self._wake_room_waiters()

    def _give_up(self, key: Hashable, job: _Decode) -> None:
        """An acquirer stopped waiting for ``job`` (timed out, cancelled, or the decode failed)."""
        with self._lock:
            if not job.finished:
                job.waiting -= 1
                return
            entry = self._entries.get(key)
            failed = job.future.cancelled() or job.future.exception() is not None
            if entry is not None and not failed and entry.image is job.future.result():
                entry.refs -= 1  # its reference was counted when the decode finished
                if entry.refs <= 0:
                    del self._entries[key]
                    self._wake_room_waiters()

    def _wake_room_waiters(self) -> None:
        """Room may have been made (lock held): every zoom waiting for it looks again."""
        waiters, self._room_waiters = self._room_waiters, []
        for loop, room in waiters:
            try:
                loop.call_soon_threadsafe(_set_done, room)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass


def _set_done(room: asyncio.Future) -> None:
    if not room.done():
        room.set_result(None)
