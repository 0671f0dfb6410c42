"""The engine benchmark's GPU option refuses what it cannot measure."""

from __future__ import annotations

import sys

import pytest

from benchmarks import engine as engine_benchmark


def _exit_message(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setattr(sys, "argv", ["benchmarks.engine", *argv])
    with pytest.raises(SystemExit) as exited:
        engine_benchmark.main()
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_gpu_layers_below_minus_one_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _exit_message(["--gpu-layers", "-2"], monkeypatch, capsys)
    assert "--gpu-layers at least -1" in err


def test_gpu_layers_on_a_cpu_only_llama_cpp_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp has a GPU backend: offloading is valid here")
    err = _exit_message(["--gpu-layers", "-1"], monkeypatch, capsys)
    assert "needs llama.cpp built with a GPU backend" in err
