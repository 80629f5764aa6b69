"""What the test machine lacks: a skip that says why, except under CI=true, whose .ci/run installs everything
(pip, npm, apt), so there a missing piece is a failure, not a silently smaller test run."""

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def unavailable(problem: str, under_ci: str = "") -> None:
    """Skip the test for `problem`; under CI fail instead, saying what should have installed it (`under_ci`)."""
    if IN_CI:
        pytest.fail(f"{problem}{'; ' + under_ci if under_ci else ''}")
    pytest.skip(problem)
