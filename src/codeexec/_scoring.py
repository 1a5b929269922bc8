"""Scoring: which tests run, which are skipped, and what a submission scores.

A flat list of tests is one unnamed unit scored ``"sum"`` (each test earns its share of
its ``points``); groups are units of their own (see :class:`~codeexec.TestGroup`). The
runner asks :class:`Scorer` before each test whether to run it, tells it each result,
and gets the groups' results and the score at the end. Nothing here runs anything.
"""

from __future__ import annotations

import attrs

from ._model import GroupResult, Submission, TestCase, TestGroup, TestResult, Verdict

__all__ = ["Scorer", "Unit", "overall", "skipped"]


@attrs.frozen
class Unit:
    """Tests that score together: a group, or the flat list (``group`` None)."""

    tests: tuple[TestCase, ...]
    group: TestGroup | None = None

    @property
    def name(self) -> str | None:
        return None if self.group is None else self.group.name

    @property
    def stops_at_failure(self) -> bool:
        """Whether its first failed test skips the rest (a ``"min"`` group)."""
        return self.group is not None and self.group.scoring == "min"


def skipped(test: TestCase, group: str | None, why: str) -> TestResult:
    """The result of a test that was not run."""
    return TestResult(name=test.name, verdict=Verdict.SKIPPED, group=group, message=why)


def _passed(result: TestResult) -> bool:
    return result.verdict is Verdict.ACCEPTED


class Scorer:
    """Follows one submission's judging, unit by unit and test by test."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        if submission.groups:
            self.units = [Unit(g.tests, g) for g in submission.groups]
        else:
            self.units = [Unit(submission.effective_tests)]
        self._passed: dict[str, bool] = {}
        self._shares: list[float] = []  # of the unit being judged
        self._stopped = ""  # why the whole submission stopped, once it has
        self._groups: list[GroupResult] = []

    def blocked(self, unit: Unit) -> str:
        """Why none of the unit's tests may run ("" if they may)."""
        if self._stopped:
            return self._stopped
        if unit.group is not None:
            for dependency in unit.group.depends_on:
                if not self._passed[dependency]:
                    return f"group {dependency!r}, which this group depends on, failed"
        return ""

    def after(self, unit: Unit, result: TestResult, share: float) -> str:
        """Note a test's result and the share of its points it earned (0 to 1); why
        the unit's remaining tests are skipped ("" if they run)."""
        self._shares.append(share)
        if _passed(result) or result.verdict is Verdict.SKIPPED:
            return ""
        where = f"test {result.name!r}" if result.name else "an earlier test"
        if self.submission.stop_on_failure:
            self._stopped = f"judging stopped at {where} ({result.verdict.value})"
            return self._stopped
        if unit.stops_at_failure and share <= 0:
            return f"{where} of group {unit.name!r} failed ({result.verdict.value})"
        return ""

    def finish(self, unit: Unit, results: list[TestResult], blocked: str) -> None:
        """Close a unit with its tests' results (``blocked``: why it did not run)."""
        group = unit.group
        shares, self._shares = self._shares, []
        if group is None:
            return
        self._passed[group.name] = not blocked and all(_passed(r) for r in results)
        if blocked:
            verdict, score, message = Verdict.SKIPPED, 0.0, blocked
        else:
            first = next((r for r in results if not _passed(r)), None)
            verdict = Verdict.ACCEPTED if first is None else first.verdict
            message = "" if first is None else first.message
            if group.scoring == "sum":
                score = sum(r.points for r in results)
            else:
                # A skipped test earned nothing (it follows a failed one anyway).
                shares += [0.0] * (len(results) - len(shares))
                score = group.points * min(shares, default=0.0)
        self._groups.append(
            GroupResult(
                name=group.name,
                verdict=verdict,
                score=score,
                max_score=group.max_score,
                message=message,
            )
        )

    @property
    def groups(self) -> tuple[GroupResult, ...]:
        return tuple(self._groups)

    def score(self, results: list[TestResult]) -> tuple[float, float]:
        """(score, max_score) of the whole submission."""
        if self.submission.groups:
            return (sum(g.score for g in self._groups), sum(g.max_score for g in self._groups))
        tests = self.units[0].tests
        return sum(r.points for r in results), sum(t.worth for t in tests)


def overall(results: list[TestResult] | tuple[TestResult, ...]) -> Verdict:
    """The submission's verdict: its first test neither accepted nor skipped."""
    return next(
        (
            r.verdict
            for r in results
            if r.verdict is not Verdict.ACCEPTED and r.verdict is not Verdict.SKIPPED
        ),
        Verdict.ACCEPTED,
    )
