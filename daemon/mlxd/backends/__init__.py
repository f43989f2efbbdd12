"""The backends: local MLX models and OpenAI-compatible / Anthropic servers behind one interface
(`mlxd.types.Backend`), built from the config by `make_backends`."""

from ..types import Backend
from .factory import make_backends, retired
from .local_score import loglikelihoods
from .messages import sized
from .pools import HTTPPools

__all__ = ["Backend", "HTTPPools", "loglikelihoods", "make_backends", "retired", "sized"]
