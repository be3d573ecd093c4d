"""LightGBM compiled to C: the same predictions as LightGBM, or LightGBM keeps serving."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from offerloop import ManualClock, Offerloop, Settings
from offerloop.policies import EpsilonGreedy, GBTPurchase, LoggedData
from offerloop.policies._compiled import Unsupported, compile_booster
from tests.helpers import campaign, logged_data


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 8))
    x[:, 3] = rng.integers(0, 3, 3000)  # many exact zeros
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.02] = -1e-35  # LightGBM reads it as zero
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 3]) + rng.normal(size=3000)) > 0
    return x, y.astype(np.float64)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary"},
        {"objective": "binary", "sigmoid": 0.7},
        {"objective": "regression"},
        {"objective": "regression", "zero_as_missing": True},
        {"objective": "binary", "use_missing": False},
        {"objective": "tweedie"},  # GBTRevenue: revenue is non-negative, log link
    ],
)
def test_compiled_trees_reproduce_lightgbm_exactly(params: dict, tmp_path: Path) -> None:
    x, y = _data()
    booster = lgb.train(
        {**params, "num_leaves": 15, "verbose": -1, "min_data_in_leaf": 5},
        lgb.Dataset(x, label=y),
        num_boost_round=40,
    )
    compiled = compile_booster(booster.model_to_string(), booster.predict, tmp_path)
    test = _data(seed=1)[0]
    np.testing.assert_array_equal(compiled.predict(test), booster.predict(test))
    assert list(tmp_path.rglob("*.so")) == []  # loaded, and nothing left to plant over
    # the same model again: the library this process compiled, no second compile
    again = compile_booster(booster.model_to_string(), booster.predict, tmp_path)
    assert again is compiled
    with pytest.raises(ValueError, match="features"):
        compiled.predict(test[:, :3])


def test_models_it_does_not_cover_keep_lightgbm(tmp_path: Path) -> None:
    x, y = _data()
    x[:, 3] = np.nan_to_num(x[:, 3])
    cat = lgb.train(
        {"objective": "binary", "verbose": -1},
        lgb.Dataset(x, label=y, categorical_feature=[3]),
        num_boost_round=5,
    )
    with pytest.raises(Unsupported, match="categorical"):
        compile_booster(cat.model_to_string(), cat.predict, tmp_path)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(x, label=(y + (x[:, 0] > 1)).clip(0, 2)),
        num_boost_round=3,
    )
    with pytest.raises(Unsupported, match="multiclass"):
        compile_booster(multi.model_to_string(), multi.predict, tmp_path)


def test_a_compiled_model_that_disagrees_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, label=y), 5)
    with pytest.raises(RuntimeError, match="differ"):
        compile_booster(booster.model_to_string(), lambda m: booster.predict(m) + 1e-6, tmp_path)
    with pytest.raises(RuntimeError, match="compiling"):
        compile_booster(booster.model_to_string(), booster.predict, tmp_path / "x", "false")


def _gbt_policy(logged: LoggedData) -> EpsilonGreedy:
    offers = campaign().offer_ids
    prices = [o.price for o in campaign().offers]
    model = GBTPurchase(offers, prices, n_estimators=30, min_data_in_leaf=5)
    return EpsilonGreedy(offers, model, epsilon=0.1).fit(logged)


def test_a_gbt_policy_serves_the_same_probabilities_compiled(tmp_path: Path) -> None:
    logged = logged_data(600, seed=3)[0]
    policy = _gbt_policy(logged)
    rows = list(logged.features[:50])
    before = np.vstack([policy.act(r) for r in rows])
    assert policy.compile(tmp_path) == 1
    after = np.vstack([policy.act(r) for r in rows])
    np.testing.assert_array_equal(after, before)


def test_without_a_compiler_lightgbm_serves_and_the_failure_is_counted(
    settings: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", "/bin/false")
    system = Offerloop(settings.replace(compile_after_decisions=1), clock)
    try:
        system.bootstrap(actor="test")
        c = system.campaign(None)
        policy = _gbt_policy(logged_data(600, seed=3)[0])
        system.deployments.release(system.registry.register(c.id, policy).version, actor="test")
        d = system.decide("p1")
        system.decider.wait_compiled()
        assert d.record.fallback == ""
        assert system.decide("p2").record.mode == "released"
        value = system.metrics.registry.get_sample_value(
            "offerloop_errors_total", {"kind": "compile"}
        )
        assert value == 1
    finally:
        system.close()


def test_a_version_is_compiled_once_it_is_hot_not_before(
    settings: Settings, clock: ManualClock
) -> None:
    """A backtest replaces its model every few hundred decisions: compiling each one cost the
    demo minutes of the C compiler for models that served a few seconds. A version is
    compiled once it has served ``compile_after_decisions`` decisions in the process."""
    system = Offerloop(settings.replace(compile_after_decisions=5), clock)
    try:
        system.bootstrap(actor="test")
        c = system.campaign(None)
        policy = _gbt_policy(logged_data(600, seed=3)[0])
        system.deployments.release(system.registry.register(c.id, policy).version, actor="test")
        served = system.decider.live(c.id).released
        assert served is not None
        model = served[1].model  # type: ignore[attr-defined]
        for i in range(4):
            system.decide(f"p{i}")
        system.decider.wait_compiled()
        assert model._compiled is None
        system.decide("p4")
        system.decider.wait_compiled()
        assert model._compiled is not None
        assert system.decide("p5").record.fallback == ""
    finally:
        system.close()


def test_a_library_planted_in_the_data_directory_is_never_loaded(tmp_path: Path) -> None:
    """Finding 10 of issue 13: a file planted over a compiled model's .so in the data dir was
    loaded and run. The planted library here leaves a mark the moment it is loaded."""
    import hashlib
    import shutil
    import subprocess

    from offerloop.policies._compiled import _c_source

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    x, y = _data()
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, label=y), 5)
    text = booster.model_to_string()
    mark = tmp_path / "planted-code-ran"
    evil = tmp_path / "evil.c"
    evil.write_text(
        "#include <stdio.h>\n"
        f'__attribute__((constructor)) static void run(void) {{ fopen("{mark}", "w"); }}\n'
        "void offerloop_predict(const double* x, long n, double* out) "
        "{ for (long i = 0; i < n; i++) out[i] = 0.5; }\n"
    )
    cache = tmp_path / "compiled"
    cache.mkdir()
    _, source = _c_source(text)
    for key in (hashlib.sha256(source.encode()).hexdigest()[:32],):  # where it used to look
        subprocess.run(
            [cc, "-shared", "-fPIC", "-o", str(cache / f"trees-{key}.so"), str(evil)], check=True
        )
    compiled = compile_booster(text, booster.predict, cache)
    np.testing.assert_array_equal(compiled.predict(x), booster.predict(x))
    assert not mark.exists()
