"""One decoded original per image per agent-loop worker, shared by every trajectory that zooms into it.

veRL runs all ``rollout.n`` trajectories of a prompt in one agent-loop worker process (and the zoom tool is loaded
once per worker), so the 8 rollouts of a prompt would each decode the same 8K original (about 100 MB and 0.6 s
each). :class:`OriginalCache` keeps one decoded copy per image identity while any trajectory holds it:

- keyed by identity: a file's resolved path with its device, inode, size and mtime (an edited file is a new
  image), or a digest of the row's ``image_bytes``;
- concurrent first calls share one decode (the others await it);
- reference counted: a trajectory holds its copy until the agent loop releases it at the end of the rollout, and
  the copy is dropped when the last holder releases it;
- bounded: decoded bytes kept in the cache never exceed ``budget_bytes``; an image that does not fit is not kept
  (the trajectories already waiting for its decode share that one copy, later ones decode it again) instead of
  waiting for room.

Decoding runs on a small thread pool and every wait is bounded by ``timeout_s``: a stuck read (a network file
system, say) fails the zoom, never the rollout.
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
    shared: bool
    released: bool = field(default=False, compare=False)


@dataclass
class _Entry:
    image: Image.Image
    nbytes: int
    refs: int


class OriginalCache:
    """Decoded originals shared between the trajectories of one worker process (see the module doc)."""

    def __init__(self, budget_bytes: int, timeout_s: float) -> None:
        if budget_bytes < 0 or timeout_s <= 0:
            raise ValueError(f"need budget_bytes >= 0 and timeout_s > 0, got {budget_bytes}, {timeout_s}")
        self.budget_bytes = int(budget_bytes)
        self.timeout_s = float(timeout_s)
        self.decodes = 0  # decodes started, for diagnostics and the benchmark
        self._entries: dict[Hashable, _Entry] = {}
        self._pending: dict[Hashable, concurrent.futures.Future] = {}
        self._lock = threading.RLock()  # a done future runs its callback at once, lock held
        self._executor = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="zoom-decode")

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    async def acquire(self, key: Hashable, decode: Callable[[], Image.Image]) -> Held:
        """The decoded image for ``key``, decoding it with ``decode`` unless held or being decoded already.

        Raises whatever ``decode`` raised, or ``TimeoutError`` after ``timeout_s``.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.refs += 1
                return Held(key, entry.image, shared=True)
            future = self._pending.get(key)
            if future is None:
                future = self._executor.submit(decode)
                self.decodes += 1
                self._pending[key] = future
                future.add_done_callback(lambda f, k=key: self._forget_pending(k, f))
        image = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.refs += 1
                return Held(key, entry.image, shared=True)
            nbytes = image_nbytes(image)
            if sum(e.nbytes for e in self._entries.values()) + nbytes > self.budget_bytes:
                logger.info("original %s (%d bytes) exceeds the cache budget: decoded for one trajectory", key, nbytes)
                return Held(key, image, shared=False)
            self._entries[key] = _Entry(image, nbytes, refs=1)
            return Held(key, image, shared=True)

    def share(self, held: Held) -> Held:
        """Another reference to ``held``'s image (a branch that adopts its leader's trajectory)."""
        with self._lock:
            entry = self._entries.get(held.key) if held.shared else None
            if entry is not None and entry.image is held.image:
                entry.refs += 1
                return Held(held.key, entry.image, shared=True)
        return Held(held.key, held.image, shared=False)

    def release(self, held: Held) -> None:
        """Give back one reference; the decoded copy goes when nobody holds it. Releasing twice is a no-op."""
        if held.released:
            return
        held.released = True
        if not held.shared:
            return
        with self._lock:
            entry = self._entries.get(held.key)
            if entry is None or entry.image is not held.image:
                return
            entry.refs -= 1
            if entry.refs <= 0:
                del self._entries[held.key]

    def _forget_pending(self, key: Hashable, future: concurrent.futures.Future) -> None:
        with self._lock:
            if self._pending.get(key) is future:
                del self._pending[key]
