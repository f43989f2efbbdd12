"""uris.py: the one normal form of a document URI (issue #14 item 1) and the paths an
exclude is matched against (issue #15 case 3)."""

from __future__ import annotations

import pytest

from mlxd import uris


@pytest.mark.parametrize(
    "a, b",
    [
        ("file:///home/ana/My%20Project/app.py", "file:///home/ana/My Project/app.py"),
        ("file:///c%3A/work/app.py", "file:///C:/work/app.py"),
        ("file:///C%3A/work/app.py", "file:///c:/work/app.py"),
        ("file:///home/jos%C3%A9/a.py", "file:///home/jos\u00e9/a.py"),
        ("untitled:Untitled%201", "untitled:Untitled 1"),
    ],
)
def test_spellings_of_one_address_have_one_key(a, b):
    assert uris.key(a) == uris.key(b)


def test_different_documents_keep_different_keys():
    assert uris.key("file:///p/a.py") != uris.key("file:///p/b.py")
    cell = "vscode-notebook-cell:/p/nb.ipynb#W0sZmlsZQ%3D%3D"
    assert uris.key(cell) != uris.key("vscode-notebook-cell:/p/nb.ipynb#W1sZmlsZQ%3D%3D")
