"""models/download.py without a network: the error wording, the tqdm stand-in, the throttle."""

from __future__ import annotations

import threading

import httpx2
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from mlxd.models import download
from mlxd.models.download import LoadCancelled, _Meter, explain, progress_message

REPO = "mlx-community/X-4bit"
ENDPOINT = "https://huggingface.co"


def _chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as e:
            raise outer from e
    except Exception as e:
        return e


def _http_error(cls: type, status: int) -> Exception:
    request = httpx2.Request("GET", f"{ENDPOINT}/api/models/{REPO}")
    return cls("nope", response=httpx2.Response(status, request=request))


OFFLINE = [
    LocalEntryNotFoundError("cannot find the requested files in the cache, check your connection"),
    _chained(RuntimeError("download failed"), httpx2.ConnectError("[Errno 111] refused")),
    _chained(RuntimeError("x"), httpx2.ConnectError("[Errno -2] Name or service not known")),
    ConnectionRefusedError(111, "Connection refused"),
    OfflineModeIsEnabled("HF_HUB_OFFLINE is set"),
    _chained(RuntimeError("x"), httpx2.ReadTimeout("timed out")),
]


@pytest.mark.parametrize("exc", OFFLINE, ids=lambda e: type(e).__name__)
def test_offline_kinds_name_the_model_the_cause_and_the_remedies(exc: Exception) -> None:
    text = explain(REPO, exc, ENDPOINT)
    assert REPO in text and "offline" in text and ENDPOINT in text
    assert f"hf download {REPO}" in text and "local.model" in text


def test_unknown_and_gated_repos_are_not_called_offline() -> None:
    missing = explain(REPO, _http_error(RepositoryNotFoundError, 404), ENDPOINT)
    gated = explain(REPO, _http_error(GatedRepoError, 403), ENDPOINT)
    assert "offline" not in missing and "no such repo" in missing and REPO in missing
    assert "offline" not in gated and "gated" in gated and "hf auth login" in gated


def test_a_hub_error_status_is_not_called_offline() -> None:
    down = _chained(
        LocalEntryNotFoundError("check your connection"), _http_error(HfHubHTTPError, 503)
    )
    text = explain(REPO, down, ENDPOINT)
    assert "HTTP 503" in text and "offline" not in text and REPO in text


def test_disk_errors_and_the_rest_keep_their_cause() -> None:
    assert "No space left" in explain(REPO, OSError(28, "No space left on device"), ENDPOINT)
    other = explain(REPO, ValueError("odd"), ENDPOINT)
    assert "ValueError: odd" in other and REPO in other


def test_progress_message_shapes() -> None:
    assert progress_message(REPO, 312_000_000, 1_024_000_000) == (
        f"downloading {REPO}: 312 / 1,024 MB (30%)"
    )
    assert progress_message(REPO, 5_000_000, 0) == f"downloading {REPO}: 5 MB"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _meter(monkeypatch: pytest.MonkeyPatch) -> tuple[_Meter, list[tuple[int, int]], _Clock]:
    clock = _Clock()
    monkeypatch.setattr(download.time, "monotonic", clock)
    seen: list[tuple[int, int]] = []
    return _Meter(lambda d, t: seen.append((d, t)), threading.Event(), REPO), seen, clock


def test_only_the_bytes_written_bar_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """snapshot_download's three bars: files, network bytes (no total shown), bytes written."""
    meter, seen, clock = _meter(monkeypatch)
    bar_class = meter.bar_class()
    files = bar_class(total=2, desc="Fetching 2 files")
    transfer = bar_class(total=0, unit="B", bar_format="{desc}: {bar}| {n_fmt:>5}B{postfix:>12}")
    written = bar_class(total=0, unit="B", bar_format="{l_bar}{bar}| {n_fmt}B / {total_fmt}B")
    written.total = written.total + 1000  # as snapshot_download grows it per file
    transfer.total = 1250
    for bar in (transfer, written):
        bar.update(400)
        clock.now += 1
    files.update(1)
    assert seen == [(400, 1000)]
    assert (meter.done, meter.total) == (400, 1000)


def test_reports_are_throttled_but_the_last_byte_always_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter, seen, clock = _meter(monkeypatch)
    meter.planned = 1000
    for _ in range(9):
        meter.add(done=100)
        clock.now += 0.01  # 9 pieces within 0.1 s: the first reports
    meter.add(done=100)  # the last piece: reported although within 0.1 s
    clock.now += 1
    meter.add(total=500)  # a total change alone reports nothing
    assert seen == [(100, 1000), (1000, 1000)]


def test_a_set_stop_flag_raises_at_the_next_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    meter, seen, _ = _meter(monkeypatch)
    bar = meter.bar_class()(total=0, unit="B")
    bar.update(10)
    meter.stop.set()
    with pytest.raises(LoadCancelled, match=f"{REPO} was cancelled"):
        bar.update(10)
    with pytest.raises(LoadCancelled):
        meter.bar_class()(total=3)  # a bar opened after the cancel
    assert meter.done == 10
