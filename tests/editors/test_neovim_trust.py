"""Issue #15 in the real Neovim (0.12 and 0.11): a chat about lines of an excluded `.env` stays
local, and so does its follow-up typed after the `.env` buffer is gone (case 2: only rule 1's
memory of the conversation can keep it local then). A real fake cloud provider on loopback
counts what it receives: 0 requests."""

from __future__ import annotations

from pathlib import Path

from tests.editors.conftest import NvimRunner, in_thread
from tests.editors.test_neovim import sample_file, scenario_env
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-nvim-follow-up-0123456789"
ENV_TEXT = "API_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2-but-longer\n"


def test_a_follow_up_of_a_chat_about_an_excluded_file_stays_local(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    sample_file(tmp_path, "x = 1\n")
    env_file = tmp_path / "work" / ".env"
    env_file.write_text(ENV_TEXT)
    config = tmp_path / "mlxd.toml"
    with in_thread(FakeProvider(require_key=KEY)) as fake:
        fake.default = Reply.text(["cloud answer"])
        config.write_text(  # the default excludes (**/.env among them)
            f'[local]\nmodel = "{tiny_model}"\npreload = true\n\n'
            '[routing]\ncloud = true\nchat = ["cloudy", "local"]\n\n'
            f'[backends.cloudy]\nbase_url = "{fake.openai_url}"\nmodel = "m"\n'
            'api_key_env = "MLXD_FOLLOW_KEY"\n'
        )
        env = scenario_env(config, tmp_path, MLXD_FOLLOW_KEY=KEY, MLXD_TEST_ENV_FILE=str(env_file))
        run = neovim.run("followup", env, 75)
        received = fake.request_count
    r, ctx = run.result, run.context()
    assert r["first"] == {"backend": "local"}, ctx
    assert r["second"] == {"backend": "local"}, ctx
    assert "hunter2-but-longer" in r["history"][0]["content"], ctx  # the follow-up carried it
    assert received == 0, ctx
