"""What the provider backends (openai.py, anthropic.py) share around their own wire format."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mlxd.backends.http import HTTPClient, excerpt
from mlxd.backends.pools import HTTPPools
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.types import Request

if TYPE_CHECKING:
    from mlxd.secrets import KeyStore

MODEL_NAME_MAX = 200  # characters of a provider's model name passed on (then "...")


class CloudBackend:
    """What the provider backends (openai, anthropic) share: their config, their keys, one
    connection pool, and the Backend interface's bookkeeping (the provider serves the model,
    so there is nothing to load)."""

    is_local = False
    specs: tuple[str, ...] = ()  # the provider serves the model: nothing in the pool

    def __init__(
        self,
        name: str,
        cfg: BackendConfig,
        timeouts: TimeoutsConfig,
        keys: KeyStore,
        pools: HTTPPools | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._keys = keys
        self._http = HTTPClient(name, timeouts, redact=keys.redact, scrub=keys.scrub, pools=pools)
        self._base = cfg.base_url.rstrip("/")  # the provider's routes are joined to it

    def scrubbed(self, request: Request) -> Request:
        """`request` with a key the cursor splits taken out of its prefix and suffix
        (KeyStore.scrub_around); every string of the body is scrubbed as it is sent (http.py)."""
        if not (request.prefix and request.suffix):
            return request
        prefix, suffix = self._keys.scrub_around(request.prefix, request.suffix)
        return replace(request, prefix=prefix, suffix=suffix)

    @property
    def spec(self) -> str:
        """The model asked for (the backend's name when the config names none)."""
        return self.cfg.model or self.name

    def reported_model(self, value: object, fallback: str | None) -> str | None:
        """The model the provider says served the answer, as the client is shown it: a string
        only (else `fallback`), redacted and cut to MODEL_NAME_MAX characters: a hostile
        server may echo a key there, or send any JSON value."""
        if not isinstance(value, str) or not value.strip():
            return fallback
        return excerpt(" ".join(value.split()), self._keys.redact, MODEL_NAME_MAX)

    @property
    def loaded(self) -> bool:
        return False

    async def close(self) -> None:
        await self._http.close()
