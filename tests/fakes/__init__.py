"""Real stand-ins for things tests cannot use for real: cloud providers (providers.py) and an OS
keyring (FileKeyring below).

FileKeyring is a genuine `keyring` backend that stores passwords in a JSON file, so the keyring
API (and mlxd's use of it) runs unchanged. Select it in-process with
`keyring.set_keyring(FileKeyring(path))`, or for a subprocess with the environment
`PYTHON_KEYRING_BACKEND=tests.fakes.FileKeyring MLXD_TEST_KEYRING_FILE=/tmp/x.json` (the repo
root must be importable, e.g. `PYTHONPATH=<repo>`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jaraco.classes.properties import classproperty
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

ENV_FILE = "MLXD_TEST_KEYRING_FILE"


class FileKeyring(KeyringBackend):
    @classproperty
    def priority(cls) -> float:
        # keyring instantiates every backend class it knows to pick a default: this one must
        # never win that contest by accident, only when named.
        if not os.environ.get(ENV_FILE):
            raise RuntimeError(f"FileKeyring needs ${ENV_FILE}")
        return 0.5

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self._path = Path(path) if path else None

    @property
    def path(self) -> Path:
        if self._path is None:
            where = os.environ.get(ENV_FILE)
            if not where:
                raise RuntimeError(f"FileKeyring needs a path or ${ENV_FILE}")
            self._path = Path(where)
        return self._path

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        self.path.write_text(json.dumps(data))
        self.path.chmod(0o600)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError("no such password")
        del data[service][username]
        self._save(data)
