"""Model names through real processes: config aliases in the CLI, `cllm models` showing what can be
called now, checking `cllm models default`, and one-line errors with the closest names."""

from __future__ import annotations

import pytest
from conftest import Cli, last_user_text, text_stream
from support.replay_server import RecordedRequest, ScriptedResponse, error_response


def _config(cli: Cli, text: str) -> None:
    cli.home.mkdir(parents=True, exist_ok=True)
    (cli.home / "config.toml").write_text(text)


def test_an_alias_works_in_the_cli_and_is_listed(cli: Cli) -> None:
    _config(
        cli,
        f'[models.mock]\nmodel = "openai/test-model"\napi_base = "{cli.api_base}"\n'
        'api_key_env = "MOCK_KEY"\n',
    )
    cli.server.add(lambda request: text_stream([f"Re: {last_user_text(request)}"]), repeat=True)
    env = cli.env | {"MOCK_KEY": "sk-from-alias"}
    answered, listed, as_default = cli.run_many(
        (["-m", "mock", "hello"], env), (["models"], env), (["models", "default", "mock"], env), model=False
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == "Re: hello\n"
    [request] = cli.server.requests
    assert request.json["model"] == "test-model"
    assert request.header("authorization") == "Bearer sk-from-alias"  # the alias's key, not OPENAI_API_KEY
    assert [r["model"] for r in cli.logs()] == ["openai/test-model"]

    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and lines[0] == "aliases (config.toml)"
    assert lines[1].startswith("  mock → openai/test-model")  # "(default)" too once the run beside it set it
    assert as_default.returncode == 0 and as_default.stdout == "mock\n"
    # The alias as the default model: no -m needed.
    bare = cli.run("again", model=False, env=env)
    assert bare.returncode == 0 and bare.stdout == "Re: again\n", bare.stderr


def test_models_default_refuses_a_name_no_provider_serves(cli: Cli) -> None:
    refused, typo, forced = cli.run_many(
        (["models", "default", "nonsense/xyz"], None),
        (["models", "default", "gpt4o"], None),
        (["models", "default", "--force", "nonsense/xyz"], None),
        model=False,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert "unknown model 'nonsense/xyz'" in refused.stderr and "--force" in refused.stderr
    assert typo.returncode == 2 and "did you mean openai/gpt-4o" in typo.stderr
    assert forced.returncode == 0 and "warning" in forced.stderr
    assert (cli.home / "config.toml").read_text().strip() == 'default_model = "nonsense/xyz"'


@pytest.mark.slow
@pytest.mark.timeout(180)  # four processes that each import LiteLLM, on a machine that may be busy
def test_models_shows_providers_whose_key_is_set_and_all_shows_the_rest(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if not k.startswith(("ANTHROPIC", "GEMINI", "GROQ"))}
    ready, everything, query, with_anthropic = cli.run_many(
        (["models"], env),
        (["models", "--all"], env),
        (["models", "-q", "gpt-4o"], env),
        (["models", "-q", "claude-haiku"], env | {"ANTHROPIC_API_KEY": "sk-ant-test"}),
        model=False,
        timeout=150,
    )
    assert ready.returncode == 0, ready.stderr
    headers = [line for line in ready.stdout.splitlines() if line and not line.startswith(" ")]
    assert "local" in headers and any(h.startswith("openai (") for h in headers)
    assert not any(h.startswith(("anthropic", "azure")) for h in headers)
    assert "  openai/gpt-4o" in ready.stdout.splitlines()
    assert "from providers with no key set" in ready.stderr and "--all" in ready.stderr
    assert len(ready.stdout.splitlines()) < len(everything.stdout.splitlines()) / 5

    assert "anthropic (" in everything.stdout and "no key set" in everything.stdout
    assert "  anthropic/claude-haiku-4-5" in everything.stdout.splitlines()

    # The exact match first.
    assert query.stdout.splitlines()[:2] == [query.stdout.splitlines()[0], "  openai/gpt-4o"]
    assert query.stdout.startswith("openai (")
    assert "  anthropic/claude-haiku-4-5" in with_anthropic.stdout.splitlines()


def test_errors_keep_the_providers_words_and_suggest_a_model(cli: Cli) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        return error_response(503, "The upstream is overloaded.")

    cli.server.add(respond, repeat=True)
    typo, fallbacks = cli.run_many(
        (["-m", "gpt4o", "hi"], None),
        (["-o", "fallbacks", '["openai/other-model"]', "-o", "num_retries", "0", "hi"], None),
    )
    assert typo.returncode == 1
    [line] = typo.stderr.strip().splitlines()
    assert line.startswith("cllm: error: unknown model 'gpt4o'") and "did you mean openai/gpt-4o" in line
    assert "LLM Provider NOT provided" not in line and len(line) < 120

    assert fallbacks.returncode == 1
    # One line for the fallback, one for the error: no LiteLLM log lines, no tracebacks.
    lines = fallbacks.stderr.strip().splitlines()
    assert len(lines) == 2, fallbacks.stderr
    [fell_back, line] = lines
    assert fell_back.startswith("falling back to openai/other-model"), fallbacks.stderr
    assert "The upstream is overloaded." in line, line
    assert "set_verbose" not in line and "All fallback attempts failed" not in line
    assert len(cli.server.requests) == 2  # the model and its fallback were both tried


def test_litellms_logger_never_reaches_stderr_unless_debug(cli: Cli) -> None:
    # What LiteLLM does on a failed fallback or a failing callback: an ERROR with a traceback.
    script = (
        "import sys\n"
        "from cllm.cli import quiet_litellm_logs\n"
        "if sys.argv[1] == 'quiet': quiet_litellm_logs()\n"
        "from cllm import _provider\n"
        "lib = _provider.litellm()\n"
        "import logging\n"
        "try:\n"
        "    raise RuntimeError('boom')\n"
        "except RuntimeError:\n"
        "    lib._logging.verbose_logger.exception('Fallback attempt failed')\n"
        "    lib._logging.verbose_router_logger.error('router failed', exc_info=True)\n"
        "    logging.getLogger('litellm.llms.some_provider').error('module failed', exc_info=True)\n"
        "print('done')\n"
    )
    import subprocess
    import sys

    quiet, loud = (
        subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, env=cli.env, timeout=120
        )
        for mode in ("quiet", "loud")
    )
    assert quiet.returncode == 0 and quiet.stdout == "done\n", quiet.stderr
    assert quiet.stderr == ""
    assert "Traceback" in loud.stderr and "Fallback attempt failed" in loud.stderr  # the test can fail
