"""Running several programs at the same time, for interactive judging: each in a slot
of its own, connected by their :class:`~codeexec.backends.Stdio`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .._errors import SandboxError
from ._protocol import RunOutcome, RunRequest

__all__ = ["check_together", "run_all"]


def check_together(requests: Sequence[RunRequest], concurrency: int, name: str) -> None:
    """Refuse what could never start: more programs at once than the sandbox has slots."""
    if len(requests) > concurrency:
        raise SandboxError(
            f"{len(requests)} programs must run at once; the {name} sandbox runs"
            f" {concurrency} at a time (give it more slots)"
        )


def run_all(
    runs: Sequence[Callable[[], RunOutcome]], requests: Sequence[RunRequest]
) -> list[RunOutcome]:
    """Call each run at the same time (the last one in this thread); the outcomes in
    order. Every request's stdio is closed at the end, whatever happened, so no
    program is left waiting on a pipe that nothing will ever close."""
    outcomes: list[RunOutcome | None] = [None] * len(runs)
    errors: list[BaseException] = []

    def call(index: int) -> None:
        try:
            outcomes[index] = runs[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
        finally:
            stdio = requests[index].stdio
            if stdio is not None:
                stdio.close()  # the other side sees end-of-file now

    threads = [
        threading.Thread(target=call, args=(i,), name=f"codeexec-together-{i}", daemon=True)
        for i in range(len(runs) - 1)
    ]
    for thread in threads:
        thread.start()
    call(len(runs) - 1)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [outcome for outcome in outcomes if outcome is not None]
