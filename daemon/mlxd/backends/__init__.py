"""The backends: local MLX models and OpenAI-compatible / Anthropic servers behind one interface
(`mlxd.types.Backend`)."""

from ..types import Backend

__all__ = ["Backend"]
