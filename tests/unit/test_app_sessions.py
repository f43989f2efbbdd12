"""The per-session / per-process split (issue #19 item 2): sessions of one process share the
model pool; each has its own config, keys, router, documents and status."""

from __future__ import annotations

from types import SimpleNamespace

from mlxd.app import App, ConfigSources, Hooks, Process


def session(process: Process, options: dict) -> App:
    return App(ConfigSources(init_options=options), Hooks(), process)


def test_sessions_of_one_process_share_the_pool_and_keep_their_own_config() -> None:
    process = Process()
    a = session(process, {})
    b = session(process, {})
    a.load_config({"routing": {"cloud": True}, "local": {"model": "a/model"}})
    b.load_config({"routing": {"cloud": False}, "local": {"model": "b/model"}})
    assert a.pool is b.pool is process.pool
    assert a.config.routing.cloud is True and b.config.routing.cloud is False
    assert a.keys is not b.keys and a.router is not b.router and a.documents is not b.documents
    assert process.specs_in_use() == {"a/model", "b/model"}
    assert process.specs_in_use(but=a) == {"b/model"}


def test_a_reload_forgets_only_the_models_no_other_session_uses() -> None:
    process = Process()
    forgotten: list[str] = []
    process.pool.forget = forgotten.append  # type: ignore[method-assign]
    a = session(process, {})
    b = session(process, {})
    a.load_config({"local": {"model": "shared/model"}})
    b.load_config({"local": {"model": "shared/model"}})
    forgotten.clear()  # the default model, left by the reloads
    a.load_config({"local": {"model": "other/model"}})
    assert forgotten == []  # b still uses it
    b.load_config({"local": {"model": "other/model"}})
    assert forgotten == ["shared/model"]


def test_a_session_leaving_keeps_its_models_warm_for_the_next_window() -> None:
    process = Process()
    forgotten: list[str] = []
    process.pool.forget = forgotten.append  # type: ignore[method-assign]
    a = session(process, {})
    a.load_config({"local": {"model": "shared/model"}})
    forgotten.clear()
    process.detach(a)
    assert forgotten == [] and process.sessions == []


def test_a_model_event_reaches_the_sessions_that_use_that_model_only() -> None:
    # Issue #19 item 9, attack finding 6: a load shows in each window whose config names the
    # model, and never in another window (its path, progress and error are not theirs).
    process = Process()
    seen: list[tuple[str, str]] = []
    progress: list[tuple[str, str]] = []
    models = ["org/m", "org/m", "org/other"]
    apps = [session(process, {"local": {"model": m, "preload": False}}) for m in models]
    for n, app in enumerate(apps):
        app.load_config()
        app.hooks.status = lambda s, n=n: seen.append((str(n), s.state))
        app.hooks.load_progress = lambda kind, f, m, n=n: progress.append((str(n), kind))
    process.pool.on_progress("org/m", 0.0, "resolving org/m")
    process.pool.on_event("org/m", "loading", "loading org/m")
    assert {who for who, state in seen if state == "loading"} == {"0", "1"}
    assert {who for who, _ in progress} == {"0", "1"}
    seen.clear()
    apps[2].load_config({"local": {"model": "org/m", "preload": False}})  # now it uses it too
    assert ("2", "loading") in seen  # the state kept for it: the load in flight


def test_in_process_serving_owns_its_process() -> None:
    app = App(ConfigSources(), Hooks())
    assert app.owns_process and app.process.sessions == [app]


def test_documents_are_keyed_by_one_normal_form_and_remember_closes() -> None:
    doc = SimpleNamespace(source="x = 1", language_id="python")
    app = App(ConfigSources(), Hooks())
    app.documents.store = lambda: {app.documents.key("file:///p/a%20b.py"): doc}
    key, found = app.documents.get("file:///p/a b.py")
    assert found is doc and app.documents.listing() == [(key, "python", "x = 1")]
    closed = app.documents.close("file:///p/a%20b.py")
    assert closed == key and app.documents.was_closed(key)
