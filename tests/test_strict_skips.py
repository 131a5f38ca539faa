"""KND_STRICT_SKIPS=1 turns every skip not on the allow-list into a failure that says why."""

from __future__ import annotations

import pytest
from helpers.project import ROOT
from helpers.strict_skips import ALLOWED

TESTS = {
    "tests/test_docker": """
        import pytest

        def test_images_build_and_serve():
            pytest.skip("no Docker engine")
        """,
    "tests/test_other": """
        import pytest

        @pytest.fixture
        def data():
            pytest.skip("no archive")

        def test_passes():
            pass

        def test_skips():
            pytest.skip("no chromium")

        @pytest.mark.skipif(True, reason="marked")
        def test_marked():
            pass

        def test_needs_data(data):
            pass

        @pytest.mark.xfail(reason="known bug")
        def test_known_bug():
            assert False
        """,
    "tests/test_whole_module": """
        import pytest

        pytest.importorskip("no_such_module_here")
        """,
}


@pytest.fixture
def outcome(pytester, monkeypatch):
    """Run the generated tests in a fresh pytest with the plugin; (strict run, lenient run)."""
    pytester.makepyfile(**TESTS)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    args = ("-p", "helpers.strict_skips", "-p", "no:cacheprovider", "-rA")
    monkeypatch.setenv("KND_STRICT_SKIPS", "1")
    strict = pytester.runpytest_subprocess(*args, "--continue-on-collection-errors")
    monkeypatch.setenv("KND_STRICT_SKIPS", "0")
    return strict, pytester.runpytest_subprocess(*args)


def test_strict_mode_fails_every_skip_but_the_allowed_ones(outcome):
    strict, lenient = outcome
    lenient.assert_outcomes(passed=1, skipped=5, xfailed=1)
    strict.assert_outcomes(passed=1, skipped=1, failed=1, errors=3, xfailed=1)  # setup: errors
    assert strict.ret != 0 and lenient.ret == 0
    strict.stdout.fnmatch_lines_random(
        [
            "*tests/test_other.py::test_skips skipped (no chromium), and KND_STRICT_SKIPS=1*",
            "*tests/test_other.py::test_marked skipped (marked)*",
            "*tests/test_other.py::test_needs_data skipped (no archive)*",
            "*tests/test_whole_module.py skipped (could not import 'no_such_module_here'*",
            "SKIPPED*tests/test_docker.py:*no Docker engine",
        ]
    )


def test_the_allowed_skips_are_real_tests():
    for nodeid in ALLOWED:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{nodeid} does not exist"
