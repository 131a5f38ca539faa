"""One log format on stderr for every command, with `-v` and `-q`; stdout keeps the results."""

from __future__ import annotations

import logging

import pytest
from helpers.models import make_checkpoint
from helpers.project import run_cli

from knd.logs import FORMAT, LEVELS, setup
from knd.models.onnx_export import export_onnx


@pytest.mark.parametrize(("name", "shown"), [("quiet", {"warn"}), ("normal", {"warn", "info"})])
def test_levels(capsys, name, shown):
    with setup(LEVELS[name]):
        log = logging.getLogger("knd.some.module")
        log.debug("debug")
        log.info("info")
        log.warning("warn")
    err = capsys.readouterr().err
    assert {word for word in ("debug", "info", "warn") if f": {word}\n" in err} == shown
    assert "knd.some.module: warn" in err and "WARNING" in err and "%(" in FORMAT
    assert logging.getLogger("knd").propagate  # as it was before: caplog still sees knd's logs


def test_cli_logs_on_stderr_and_keeps_stdout_for_results(tmp_path, monkeypatch, capsys):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    export_onnx(checkpoint, tmp_path / "model.onnx")  # predict then logs which backend it uses
    clip = tmp_path / "missing.wav"
    args = ("predict", str(clip), "--model", str(checkpoint), "--format", "json")
    status, out, err = run_cli(monkeypatch, capsys, *args)
    assert status == 1 and out.lstrip().startswith("[")  # stdout: only the JSON results
    assert "INFO" in err and "running its ONNX export" in err
    status, out, err = run_cli(monkeypatch, capsys, "-q", *args)
    assert "running its ONNX export" not in err and out.lstrip().startswith("[")
    status, _, err = run_cli(monkeypatch, capsys, "-q", "-v", *args)
    assert status == 2 and "exclude each other" in err
