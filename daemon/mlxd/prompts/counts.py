"""Per-process counts of the prompt steps that scan or tokenize the document, for `mlxd/stats`
(`inline.contextBuilds`, `inline.trims`): an inline request should build its cursor context
once, whichever backend serves it."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
