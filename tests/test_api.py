import ast
import subprocess
import sys
from pathlib import Path

import cllm

PUBLIC = {
    "AsyncStream",
    "BatchInterrupted",
    "BatchItem",
    "BatchProgress",
    "Attempt",
    "AttemptRecord",
    "CllmError",
    "Event",
    "FilePart",
    "Finish",
    "FinishReason",
    "Limits",
    "PartialJsonParser",
    "ProviderError",
    "Queued",
    "ReasoningDelta",
    "Response",
    "Section",
    "Retries",
    "Stream",
    "StreamInterrupted",
    "StreamTimeout",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "__version__",
    "abatch",
    "acomplete",
    "aprocess_file",
    "astream",
    "batch",
    "complete",
    "normalize_finish_reason",
    "parse_partial_json",
    "sections",
    "stream",
}


def test_public_names() -> None:
    assert set(cllm.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(cllm, name) is not None


def test_import_does_not_load_litellm() -> None:
    code = "import sys, cllm; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_core_imports_nothing_that_does_io() -> None:
    core = Path(cllm.__file__).parent / "core"
    allowed = {"__future__", "collections", "copy", "dataclasses", "enum", "json", "re", "typing", "cllm"}
    for path in core.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_bad_arguments_fail_clearly() -> None:
    import pytest

    with pytest.raises(ValueError, match="idle_timeout"):
        cllm.stream("openai/x", "hi", idle_timeout=0)
    with pytest.raises(ValueError, match="role"):
        cllm.stream("openai/x", [{"content": "no role"}])
