"""Messages in the words of the user's editor.

The daemon learns the editor from `initialize`'s `clientInfo.name` and names what the user can
act on there: the setting they edited (VS Code's `mlxd.config`, Neovim's `init_options`) and
the command that hands over an API key ("mlxd: Set API Key", `:MlxdSetKey`). Any other client
gets the protocol's names (`initializationOptions`, `mlxd/setApiKey`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wording:
    settings: str  # after "invalid": where the user wrote what arrived as initializationOptions
    set_key: str  # how to hand over an API key, as a clause after "or"


PROTOCOL = Wording(
    settings="initializationOptions",
    set_key="hand one over from the editor (mlxd/setApiKey)",
)
VSCODE = Wording(
    settings='setting "mlxd.config"',
    set_key='run "mlxd: Set API Key" in VS Code',
)
NEOVIM = Wording(
    settings="init_options (require('mlxd').setup)",
    set_key="run :MlxdSetKey {backend} in Neovim",
)


def for_client(name: str | None) -> Wording:
    """The wording for a client, by its `clientInfo.name` (None: unknown client)."""
    n = (name or "").lower()
    if n == "neovim" or n.startswith("nvim"):
        return NEOVIM
    # vscode-languageclient sends vscode.env.appName: "Visual Studio Code", "code-server",
    # "Code - OSS", "VSCodium", and the like.
    if "code" in n or "vscodium" in n:
        return VSCODE
    return PROTOCOL
