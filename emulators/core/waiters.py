"""Callers waiting for the next item that passes their test: a journal entry, an upload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _same(item: T) -> T:
    return item


class Waiters(list[tuple[Callable[[T], bool], asyncio.Future[T]]]):
    """The waiting callers, a list so that "anyone waiting?" stays a plain truth test on the
    paths that run for every request."""

    def offer(self, item: T, give: Callable[[T], T] = _same) -> None:
        """Wake every caller whose test ``item`` passes, each with ``give(item)``."""
        for predicate, future in list(self):
            if not future.done() and predicate(item):
                future.set_result(give(item))

    async def next(self, predicate: Callable[[T], bool], timeout: float) -> T:  # noqa: ASYNC109
        """The next item offered that passes ``predicate``; TimeoutError after ``timeout``
        seconds."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.remove(waiter)
