import pytest

from cllm import FinishReason, normalize_finish_reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", FinishReason.STOP),
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("STOP", FinishReason.STOP),
        ("FINISH_REASON_STOP", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("max_tokens", FinishReason.LENGTH),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.ERROR),
        ("error", FinishReason.ERROR),
        ("cancelled", FinishReason.CANCELLED),
        ("pause_turn", FinishReason.OTHER),
        ("something_new", FinishReason.OTHER),
        (None, None),
        ("", None),
    ],
)
def test_every_spelling_maps(raw: str | None, expected: FinishReason | None) -> None:
    assert normalize_finish_reason(raw) is expected


def test_values_are_the_lower_case_names() -> None:
    for reason in FinishReason:
        assert reason.value == reason.name.lower()
        assert str(reason) == reason.value
        assert reason == reason.value
