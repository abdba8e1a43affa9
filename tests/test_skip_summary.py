"""The end of a run counts its skips by reason instead of listing every skipped test."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests import skip_summary

pytest_plugins = ["pytester"]

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
ADDOPTS: list[str] = tomllib.loads(PYPROJECT.read_text())["tool"]["pytest"]["ini_options"]["addopts"]

SUITE = """
import pytest

NO_DB = "PostgreSQL tests need KEEL_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    if request.param == "postgres":
        pytest.skip(NO_DB)
    return request.param


@pytest.mark.parametrize("n", range(3))
def test_on_both(backend, n):
    pass


@pytest.mark.skip(reason="needs Chromium")
def test_browser():
    pass


@pytest.mark.xfail(reason="a known gap", strict=True)
def test_known_gap():
    assert False


def test_broken():
    assert 1 == 2
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # pytest's own plugins only: the installed ones (playwright, asyncio, ...) slow every run down
    # and need configuration these small suites do not have.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run_like_the_project(pytester: pytest.Pytester, **files: str) -> pytest.RunResult:
    """Run a small suite with the project's options and the plugin as its conftest, in a subprocess
    (apart from the plugins of this run). The project runs on several processes (pytest-xdist), whose
    workers send their reports to the one process that prints the summary; so do these."""
    pytester.makeconftest(Path(skip_summary.__file__).read_text())
    pytester.makepyfile(**files)
    return pytester.runpytest_subprocess("-p", "xdist.plugin", *ADDOPTS)


def test_the_skips_are_counted_by_reason_most_frequent_first(pytester: pytest.Pytester) -> None:
    result = run_like_the_project(pytester, test_suite=SUITE)

    result.assert_outcomes(passed=3, skipped=4, failed=1, xfailed=1)
    result.stdout.re_match_lines([r"=+ 4 skipped, by reason =+$", r"^3 PostgreSQL tests need", r"^1 needs Chromium$"])


def test_skipped_tests_are_not_listed_one_by_one(pytester: pytest.Pytester) -> None:
    result = run_like_the_project(pytester, test_suite=SUITE)

    result.assert_outcomes(passed=3, skipped=4, failed=1, xfailed=1)
    result.stdout.no_fnmatch_line("SKIPPED *")


def test_failures_and_xfails_keep_their_own_lines(pytester: pytest.Pytester) -> None:
    result = run_like_the_project(pytester, test_suite=SUITE)

    result.stdout.fnmatch_lines(["FAILED test_suite.py::test_broken - assert 1 == 2"])
    result.stdout.fnmatch_lines(["XFAIL *test_known_gap*"])


def test_a_run_without_skips_prints_no_summary(pytester: pytest.Pytester) -> None:
    result = run_like_the_project(pytester, test_ok="def test_ok():\n    pass\n")

    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*by reason*")


def test_a_skipped_module_counts_with_its_reason(pytester: pytest.Pytester) -> None:
    result = run_like_the_project(
        pytester, test_later='import pytest\npytest.skip("not yet", allow_module_level=True)\n'
    )

    result.stdout.re_match_lines([r"=+ 1 skipped, by reason =+$", r"^1 not yet$"])


def test_this_suite_runs_with_the_summary(request: pytest.FixtureRequest) -> None:
    hooks = request.config.hook.pytest_terminal_summary.get_hookimpls()

    assert skip_summary.pytest_terminal_summary in [hook.function for hook in hooks]
