"""CUTOVER_STRICT_SKIPS=1: a test that should run here cannot skip without failing the run."""

from __future__ import annotations

import pytest

from tests.support.strict_skips import ENV

pytest_plugins = ["pytester"]

PLUGIN = "tests.support.strict_skips"


def run(pytester: pytest.Pytester, source: str, *, strict: bool) -> pytest.RunResult:
    pytester.makepyfile(test_sample=source)
    with pytest.MonkeyPatch.context() as patch:
        if strict:
            patch.setenv(ENV, "1")
        else:
            patch.delenv(ENV, raising=False)
        return pytester.runpytest(
            "-p",
            PLUGIN,
            "-rs",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        )


UNEXPECTED = """
import pytest

def test_runs():
    pass

def test_needs_prometheus():
    pytest.skip("prometheus binary not installed")
"""


def test_an_unexpected_skip_fails_the_run_and_is_named(pytester: pytest.Pytester) -> None:
    result = run(pytester, UNEXPECTED, strict=True)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*unexpected skip: test_sample.py::test_needs_prometheus: prometheus binary not installed"]
    )


def test_without_the_variable_a_skip_is_only_reported(pytester: pytest.Pytester) -> None:
    result = run(pytester, UNEXPECTED, strict=False)
    assert result.ret == pytest.ExitCode.OK
    assert "unexpected skip" not in result.stdout.str()


def test_the_allowed_reasons_do_not_fail_the_run(pytester: pytest.Pytester) -> None:
    source = """
import pytest

def test_kind():
    pytest.skip("kind end-to-end test: `kind` is not on PATH")

def test_image():
    pytest.skip("no usable Docker engine (`docker info`: Cannot connect to the Docker daemon)")
"""
    result = run(pytester, source, strict=True)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=2)
    assert "unexpected skip" not in result.stdout.str()


def test_an_allowed_reason_must_match_whole_not_as_a_fragment(pytester: pytest.Pytester) -> None:
    # The image of the kind test not built is a step `make e2e` forgot, not a missing tool.
    source = """
import pytest

def test_kind():
    pytest.skip("kind end-to-end test: operator image x not built: run `make image`")
"""
    assert run(pytester, source, strict=True).ret == pytest.ExitCode.TESTS_FAILED


def test_a_module_level_importorskip_counts(pytester: pytest.Pytester) -> None:
    source = """
import pytest

pytest.importorskip("no_such_module_here", reason="the thing is not installed")

def test_never_collected():
    pass
"""
    result = run(pytester, source, strict=True)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*unexpected skip: test_sample.py: the thing is not installed"])


def test_xfail_and_failures_keep_their_own_outcome(pytester: pytest.Pytester) -> None:
    source = """
import pytest

@pytest.mark.xfail(reason="known bug")
def test_known():
    assert False

def test_broken():
    assert False
"""
    result = run(pytester, source, strict=True)
    result.assert_outcomes(xfailed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "unexpected skip" not in result.stdout.str()
