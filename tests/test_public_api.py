"""The public API is what the package __init__ files export; this pins all of it, the root and
every subpackage (found by walking the package, so a new one is pinned too), and asks every
public class, function and method for a docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import offerloop

ROOT = {
    "ArtifactCorrupt",
    "BackendUnavailable",
    "CampaignInvalid",
    "Clock",
    "Conflict",
    "DataRejected",
    "Forbidden",
    "InvalidInput",
    "ManualClock",
    "NotFound",
    "Offerloop",
    "OfferloopError",
    "Overloaded",
    "Problem",
    "Settings",
    "SystemClock",
    "Unauthenticated",
    "__version__",
    "format_ts",
    "load_settings",
    "parse_rfc3339",
}

SUBPACKAGES: dict[str, list[str]] = {
    "client": [
        "ApiError",
        "AsyncOfferloopClient",
        "Decision",
        "IngestResult",
        "OfferloopClient",
        "Unavailable",
    ],
    "backends": [
        "ArtifactStore",
        "BACKENDS",
        "Backend",
        "CapLedger",
        "DecisionLog",
        "DecisionRecord",
        "DeploymentRecord",
        "DeploymentStore",
        "EventLog",
        "EventRecord",
        "LoadLog",
        "ModelRecord",
        "ModelStore",
        "OFFER_OUTCOME",
        "Quarantine",
        "QuarantinedRecord",
        "RunLog",
        "ShadowChoice",
        "TransitionRecord",
        "backend_name",
        "open_backend",
    ],
    "campaigns": [
        "Bundle",
        "Campaign",
        "Cap",
        "Condition",
        "Message",
        "Offer",
        "Rule",
        "default_campaign_path",
        "load_campaign",
        "load_campaigns",
        "offer_keys",
        "parse_campaign",
    ],
    "cli": [
        "app",
        "main",
    ],
    "decisions": [
        "CONTROL",
        "Decider",
        "Decision",
        "FeatureSource",
        "ShadowScorer",
        "ShadowSink",
        "WorkerSink",
        "canary_bucket",
        "control_bucket",
        "new_decision_id",
        "ordinary",
        "score_shadows",
    ],
    "events": [
        "ATTRIBUTED",
        "AttributionRules",
        "Classify",
        "EventBatch",
        "EventIn",
        "EventIntake",
        "IngestResult",
        "KNOWN_TYPES",
        "PENDING",
        "Reward",
        "attribute",
        "check_event",
        "decision_token",
        "ingest",
        "price_shown",
    ],
    "features": [
        "AGGREGATIONS",
        "Aggregate",
        "Batch",
        "ColumnarStore",
        "Context",
        "DEFAULT_FEATURES",
        "Encoder",
        "EventSchema",
        "Feature",
        "FeatureReading",
        "FeatureSet",
        "FeatureValue",
        "InMemoryOnlineStore",
        "OfferHistory",
        "OfflineEngine",
        "OnlineFeatures",
        "OnlineStore",
        "PlayerFeatures",
        "PlayerState",
        "Profile",
        "QueryRows",
        "SinceLast",
        "Sql",
        "SyncResult",
        "aggregate",
        "batch",
        "columnar_properties",
        "context",
        "load_features",
        "offer_history",
        "parse_duration",
        "profile",
        "reference_features",
        "since_last",
        "sql",
    ],
    "monitoring": [
        "LATENCY_BUCKETS",
        "Metrics",
        "Monitor",
        "calibration",
        "conversion_by_offer",
        "drift_report",
        "histogram_quantiles",
        "js_divergence",
        "matured_rewards",
        "psi",
        "render_dashboard",
        "revenue_by_version",
        "shadow_estimates",
        "state_of",
        "write_report",
    ],
    "pipeline": [
        "BackfillResult",
        "Candidate",
        "ControlStep",
        "JUDGE",
        "LEARNERS",
        "MAX_ATTEMPTS",
        "OfflineReport",
        "PipelineScheduler",
        "RetrainResult",
        "SkewReport",
        "backfill",
        "control",
        "evaluate_offline",
        "judge_kind",
        "list_runs",
        "make_policy",
        "offline_engine",
        "pipeline_lock",
        "retrain",
        "run_pipeline",
        "skew_report",
    ],
    "policies": [
        "BucketBeta",
        "CalibratedThompson",
        "ELIGIBLE",
        "EpsilonGreedy",
        "FeatureRow",
        "FixedPolicy",
        "GBTPurchase",
        "GBTRevenue",
        "InverseGap",
        "LinearRevenue",
        "LoggedData",
        "POLICIES",
        "Policy",
        "REWARD_MODELS",
        "RandomPolicy",
        "RewardModel",
        "RulesPolicy",
        "Softmax",
        "ThompsonSampling",
        "WRAPPERS",
        "dump_policy",
        "load_policy",
        "restrict",
        "restrict_one",
        "sha256",
    ],
    "registry": [
        "CANARY",
        "DeploymentState",
        "Deployments",
        "MODES",
        "OUT_ACTIONS",
        "RELEASED",
        "Registry",
        "SHADOW",
        "bootstrap",
        "code_version",
        "dump_params",
        "model_doc",
        "prior_thompson",
        "release_stack",
        "transition_doc",
        "version_label",
    ],
    "serving": [
        "InProcessClient",
        "MAX_BODY_BYTES",
        "create_app",
    ],
    "sim": [
        "Backtest",
        "DayStats",
        "GameSimulation",
        "Player",
        "SEGMENTS",
        "Segment",
        "ServiceClock",
        "TasteChange",
        "World",
        "policy_value",
    ],
    "testing": [
        "BackendConformance",
        "FaultProxy",
        "PolicyCase",
        "PolicyConformance",
        "policy_cases",
        "wait_healthy",
    ],
    "training": [
        "ESTIMATORS",
        "EVIDENCE",
        "Estimate",
        "Evidence",
        "ImportSpec",
        "ImportedLog",
        "TrainingSet",
        "build_training_set",
        "compare",
        "compare_arrays",
        "cross_fit",
        "direct_method",
        "doubly_robust",
        "dr_terms",
        "estimate_all",
        "estimate_arrays",
        "estimate_target",
        "evaluate",
        "import_log",
        "ips",
        "load_log",
        "offer_columns",
        "paired",
        "read_table",
        "reward_bound",
        "sndr",
        "snips",
        "split_by_time",
        "switch_dr",
        "target_probabilities",
        "time_blocks",
        "warm_start",
    ],
}


def _subpackages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(offerloop.__path__) if m.ispkg)


def test_root_api_is_pinned() -> None:
    assert set(offerloop.__all__) == ROOT


def test_every_subpackage_api_is_pinned() -> None:
    assert _subpackages() == sorted(SUBPACKAGES), "a subpackage was added or removed: pin it"
    for name, names in SUBPACKAGES.items():
        mod = importlib.import_module(f"offerloop.{name}")
        assert sorted(mod.__all__) == names, f"offerloop.{name}.__all__ changed"
        for symbol in mod.__all__:
            assert hasattr(mod, symbol), f"offerloop.{name}.{symbol}"


def _documented_elsewhere(cls: type, name: str) -> bool:
    """An override of a documented base method keeps the base's contract and its docstring."""
    return any(getattr(getattr(base, name, None), "__doc__", None) for base in cls.__mro__[1:])


def _undocumented() -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    modules = ["offerloop", *(f"offerloop.{p}" for p in _subpackages())]
    for modname in modules:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj: Any = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if not obj.__doc__:
                out.append(f"{modname}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                fn = member.fget if isinstance(member, property) else member
                fn = getattr(fn, "__func__", fn)  # class and static methods
                if attr.startswith("_") or not inspect.isfunction(fn):
                    continue
                if not fn.__doc__ and not _documented_elsewhere(obj, attr):
                    out.append(f"{modname}.{name}.{attr}")
    return out


def test_every_public_definition_has_a_docstring() -> None:
    assert _undocumented() == []
