"""Settings, declared once as data.

Each field of :class:`Settings` is one setting: its name, type, default and help text. Values
come from, in order of precedence: explicit overrides (CLI flags) > ``OFFERLOOP_<NAME>``
environment variables > ``offerloop.toml`` (top-level keys) > the default here.
``docs/settings.md`` documents every setting and a test checks that it does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offerloop._clock import clock_of, parse_rfc3339
from offerloop._errors import InvalidInput, Problem
from offerloop._schedule import parse_schedule

__all__ = [
    "LEARNER_KINDS",
    "Bucket",
    "Settings",
    "learner_parts",
    "load_settings",
    "parse_buckets",
]

LEARNER_KINDS = ("linear", "gbt", "purchase_gbt", "thompson")
_LEARNER = re.compile(r"^([a-z_]+)(?:@(\d+(?:\.\d+)?)([hd]))?$")


def learner_parts(name: str) -> tuple[str, float]:
    """A learner name → (its model kind, its recency half-life in seconds; 0: none).

    ``purchase_gbt`` weighs every row the same; ``purchase_gbt@2d`` (or ``@36h``) weighs a
    row 0.5 ** (age / 2 days), age counted back from the newest row. Raises ValueError."""
    m = _LEARNER.match(name)
    if not m or m.group(1) not in LEARNER_KINDS or (m.group(2) and float(m.group(2)) <= 0):
        raise ValueError(
            f"{name!r} is not a learner: {', '.join(LEARNER_KINDS)}, optionally with a recency "
            "half-life such as purchase_gbt@2d or linear@36h"
        )
    unit = 86400.0 if m.group(3) == "d" else 3600.0
    return m.group(1), float(m.group(2)) * unit if m.group(2) else 0.0


Bucket = tuple[str, tuple[float, ...]]  # a feature and its cut points (none: by value)


def parse_buckets(text: str) -> list[Bucket]:
    """``"spend_total:0,20,60 hours_since_purchase:36 platform"`` → the bucket spec: a
    numeric feature with cut points ``c1 < c2 < …`` falls in bucket ``i`` where
    ``c_i < x <= c_(i+1)``; a feature without cut points buckets by its value. Raises
    ValueError naming what is wrong."""
    out: list[Bucket] = []
    for part in text.split():
        name, _, cuts = part.partition(":")
        if not name:
            raise ValueError(f"{part!r}: a bucket needs a feature name")
        try:
            points = tuple(float(c) for c in cuts.split(",")) if cuts else ()
        except ValueError:
            raise ValueError(f"{part!r}: cut points must be numbers separated by ','") from None
        if any(b <= a for a, b in itertools.pairwise(points)):
            raise ValueError(f"{part!r}: cut points must increase")
        if name in {n for n, _ in out}:
            raise ValueError(f"{name!r} is named twice")
        out.append((name, points))
    if not out:
        raise ValueError("name at least one feature to bucket players by")
    return out


def _s(default: Any, help: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    data_dir: str = _s(
        "offerloop-data",
        "Directory of the embedded backend: SQLite database and model artifacts.",
    )
    features: str = _s(
        "",
        "Feature definitions: a module name (mygame.features) or a .py file defining "
        "FEATURES. Empty: offerloop.features.default, the simulated game's.",
    )
    feature_delay_seconds: float = _s(
        0.0,
        "Serve features as of this many seconds ago (to measure what stale features cost); "
        "0 serves them fresh.",
    )
    batch_poll_seconds: float = _s(
        5.0, "How often the service looks for newly landed batch-source files."
    )
    campaigns: tuple[str, ...] = _s(
        (),
        "Campaign TOML files to serve. Empty: the default campaign shipped for the simulated game.",
    )
    default_campaign: str = _s(
        "", "Campaign used when a decision request names none. Empty: the first campaign loaded."
    )
    attribution_window_hours: float = _s(
        24.0, "A purchase counts as a decision's reward if it happens within this many hours."
    )
    max_batch_events: int = _s(1000, "Largest number of events accepted in one POST /v1/events.")
    max_future_seconds: float = _s(
        300.0, "Events stamped further than this into the future (clock skew) are rejected."
    )
    earliest_event_ts: str = _s(
        "2000-01-01T00:00:00Z",
        "Events stamped before this RFC 3339 time are refused (a client's clock or encoding "
        "bug, such as year 0001).",
    )
    attribution_price_tolerance: float = _s(
        0.01,
        "A purchase counts for the decision it names only if its amount is the price the offer "
        "was shown at, within this relative tolerance (or one cent); negative: any amount "
        "counts. Both are recorded either way.",
    )
    attribution_max_purchases: int = _s(
        1, "At most this many purchases count for one decision (the first ones by time)."
    )
    decision_token_secret: str = _s(
        "",
        "Secret for signed decision tokens: when set, every decide answer carries a "
        "decision_token (HMAC of decision and player) and a purchase counts only if it sends "
        "it back as properties.decision_token. Empty: no tokens.",
        secret=True,
    )
    day_one_rules_share: float = _s(
        0.0,
        "The policy released on day one (bootstrap): this share of decisions follows the "
        "campaign's rules, the rest is spread uniformly over the offers. 0: uniform random; "
        "0.5: half the rules' revenue from the first request while every offer keeps "
        "0.5/n_offers, so every learner and every off-policy estimate can use the logs. At "
        "most 0.9: a day-one policy must explore. In the simulated world 0.8 earned more over "
        "14 days but less in the last 3 (docs/architecture.md).",
    )
    day_one: str = _s(
        "random",
        "The policy released on day one (bootstrap), before any learner has data: 'random' "
        "(uniform over the offers, the campaign's rules in shadow) or 'thompson' (Thompson "
        "sampling under the uninformative prior of the thompson learner: every offer's "
        "purchase probability uniform on [0, 1], so offers are tried in proportion to their "
        "chance of earning the most, the expensive ones first; day_one_explore of the "
        "decisions spread uniformly). day_one_rules_share > 0 releases the rules instead.",
    )
    day_one_explore: float = _s(
        0.2,
        "With day_one = 'thompson': the share of day-one decisions spread uniformly over the "
        "offers (every offer keeps day_one_explore/n_offers), so the first learners and every "
        "off-policy estimate see every offer.",
    )
    handover: str = _s(
        "canary",
        "How the first learned model takes over from the day-one policy: 'canary' (a canary "
        "at canary_share, released on live evidence) or 'release' (released at once unless "
        "the held-out rows say it is worse; watched as a fresh release and rolled back to the "
        "day-one policy if it earns less).",
    )
    epsilon: float = _s(
        0.1, "Exploration share of learned policies: every offer keeps at least epsilon/n_offers."
    )
    durability: str = _s(
        "full",
        "SQLite synchronous mode: 'full' fsyncs every commit (survives power loss); "
        "'normal' survives a crash of the process but may lose the last commits on power loss.",
    )
    decision_seed: int = _s(
        -1, "Seed of the random draws of decisions; -1 draws a fresh seed at start."
    )
    min_training_decisions: int = _s(
        200, "Retraining is skipped with fewer decisions whose reward is final."
    )
    gate_margin: float = _s(
        0.0,
        "Pipeline gate: a new learner goes to canary (or shadow, while a canary runs) only if "
        "the lower bound of its doubly robust uplift over the release exceeds this (revenue "
        "per decision).",
    )
    gate_confidence: float = _s(
        0.8,
        "One-sided confidence of the pipeline gate's lower bound (0.8: the uplift beats the "
        "margin with 80% confidence). Lenient on purpose: a shadow is never shown, and the "
        "controller demands live evidence before any player sees it.",
    )
    warm_start_logs: tuple[str, ...] = _s(
        (),
        "Imported logs (offerloop logs import) whose decisions retrain adds to the campaign's "
        "own, older than any of them: a first model before offerloop has logged anything. "
        "Their actions must be the campaign's offers; columns named like features are used.",
    )
    min_effective_rows: float = _s(
        50.0,
        "Off-policy evidence: an estimate whose importance weights have fewer effective rows "
        "than this is too thin; the gate and the controller refuse to decide on it.",
    )
    min_rewarded_rows: int = _s(
        10,
        "Off-policy evidence: an estimate resting on fewer rewarded rows (where the policy "
        "could have chosen the logged offer) is too thin to decide on.",
    )
    refit_on_all: bool = _s(
        True,
        "Retrain judges each candidate as fitted on the older rows against the newest ones, "
        "then deploys the winner refitted on all rows (its lineage names the judged fit).",
    )
    retrain_min_growth: float = _s(
        0.0,
        "Cadence: a pipeline run retrains only once the decisions with a final reward have "
        "grown by this share since the last run that retrained (or retrain_max_age_hours "
        "passed); otherwise it runs the controller alone. With a frequent pipeline_schedule "
        "(hourly), models follow each other within hours while every decision counts and "
        "slow to retrain_max_age_hours as data accumulates. 0: every run retrains.",
    )
    retrain_max_age_hours: float = _s(
        6.0,
        "Cadence: a run retrains whatever the growth once the last training is this old "
        "(in clock hours; with retrain_min_growth).",
    )
    training_window_days: float = _s(
        28.0,
        "Retraining (and a judge fitted on the spot) reads only the decisions of this many "
        "days before the newest with a final reward: what a run reads stays bounded however "
        "long the log grows (recency half-lives weigh older rows little anyway). 0: the "
        "whole log.",
    )
    ridge_alpha: float = _s(1.0, "L2 penalty of the linear learned policy.")
    learners: tuple[str, ...] = _s(
        ("linear", "gbt", "purchase_gbt"),
        "Learners retrain trains and compares: linear (ridge, player × offer interactions), "
        "gbt (LightGBM revenue), purchase_gbt (LightGBM purchase probability × price), "
        "thompson (Beta posterior of the purchase probability per bucket of thompson_buckets "
        "and offer, served by Thompson sampling with exact propensities); "
        "each optionally with a recency half-life (purchase_gbt@2d: a row weighs half as "
        "much for every 2 days it is older than the newest), judged like any other learner.",
    )
    exploration: str = _s(
        "squarecb",
        "How learned policies explore: squarecb (inverse-gap weighting: offers predicted "
        "nearly as good as the best are tried often, far worse ones rarely, less as data "
        "grows; every offer keeps exploration_floor/n_offers), thompson (Thompson sampling "
        "over the model's calibration per bucket of thompson_buckets and offer: offers the "
        "model has little evidence on for such players are tried by their chance of being "
        "the best, less as evidence accumulates; exploration_floor as for squarecb), "
        "epsilon_greedy, or softmax (temperature softmax_temperature); the last two keep "
        "every offer at least epsilon/n_offers.",
    )
    thompson_buckets: str = _s(
        "spend_total:0,20,60 hours_since_purchase:36 platform",
        "The buckets of players of the thompson learner and of thompson exploration: "
        "features separated by spaces, a numeric one with increasing cut points "
        "(spend_total:0,20,60 is four tiers: <= 0, <= 20, <= 60, more), one without "
        "buckets by value.",
    )
    squarecb_gamma_scale: float = _s(
        3.0,
        "squarecb exploration: gamma = this x sqrt(n_offers x training rows), in 1/revenue; "
        "the expected cost of exploring is at most n_offers/gamma per decision.",
    )
    exploration_floor: float = _s(
        0.02,
        "squarecb and thompson exploration: this share of every decision is spread uniformly "
        "over the offers, so off-policy evaluation of any other policy stays possible.",
    )
    softmax_temperature: float = _s(
        0.2, "Temperature of softmax exploration, in revenue per decision."
    )
    scoring_budget_ms: float = _s(
        5.0,
        "Model check and latency guardrail: a candidate's p99 CPU time to score one decision "
        "must stay below this (milliseconds).",
    )
    latency_tolerance: float = _s(
        1.5,
        "Latency guardrail: a canary (or fresh release) breaks it only when its p99 scoring time "
        "(CPU time of the scoring thread: a busy host does not count against the model) is "
        "over scoring_budget_ms and over this many times the release's p99 measured over "
        "the same interval, in most of 5 readings.",
    )
    canary_share: float = _s(
        0.2,
        "Smallest share of players a canary serves: a new canary starts here (or higher, as "
        "its evidence allows) and moves with the evidence up to canary_max_share.",
    )
    canary_max_share: float = _s(
        0.9,
        "Largest share a canary reaches before release: its share is the probability that it "
        "earns more than the release (live doubly robust evidence; while that is too thin, "
        "the realised revenue of its players against the release's), within "
        "[canary_share, canary_max_share].",
    )
    sequential_confidence: float = _s(
        0.95,
        "Confidence of the controller's always-valid (time-uniform) intervals: a canary is "
        "released once the lower bound of its live uplift is above 0, rolled back and a "
        "shadow retired once the upper bound is below 0, judged again at every run without "
        "peeking bias.",
    )
    max_learned_shadows: int = _s(
        3,
        "Learned candidates kept in shadow at once: the oldest keep their place (they have "
        "gathered the most live evidence) and the newest slot takes each new candidate.",
    )
    shadow_min_decisions: int = _s(
        500,
        "The controller moves a shadow to canary after this many matured shadow-scored "
        "decisions, when its off-policy estimate on them beats the release.",
    )
    canary_min_decisions: int = _s(
        100,
        "Matured canary decisions before the controller compares its realised revenue with the "
        "release's (an always-valid test, asked again at every run).",
    )
    canary_promote_decisions: int = _s(
        1000,
        "Matured canary decisions after which a canary that is not worse is released.",
    )
    shadow_confidence: float = _s(
        0.8,
        "One-sided confidence with which a shadow's live off-policy uplift over the release "
        "must be positive before the controller makes it the canary (0.5: the point estimate).",
    )
    guard_confidence: float = _s(
        0.95,
        "One-sided confidence with which a canary (or fresh release) must be worse in realised "
        "revenue per decision before the controller rolls it back.",
    )
    release_watch_decisions: int = _s(
        1000,
        "A fresh release is watched for this many matured decisions: if its realised revenue "
        "per decision is worse than the previous release's (guard_confidence), it is rolled back.",
    )
    max_error_rate: float = _s(
        0.01,
        "Guardrail: a canary (or shadow) that fails to score more than this share of its "
        "decisions is taken out of service.",
    )
    clock: str = _s(
        "system",
        "Where time comes from: 'system' (the wall clock), 'manual' (starts now, then moves "
        "only through POST /v1/admin/clock) or 'manual:2026-01-01T00:00:00Z': decisions, "
        "attribution windows, schedules and pipeline runs all follow it (backtests, rehearsals).",
    )
    pipeline_schedule: str = _s(
        "",
        "Run the pipeline inside `offerloop serve` on this schedule: an interval ('24h', '30m') "
        "or a 5-field cron expression ('0 3 * * *', UTC). Empty: no in-service schedule.",
    )
    drift_window_hours: float = _s(
        24.0,
        "Drift compares the decisions of this many recent hours with the released version's "
        "training window (or the log's first such window for untrained releases).",
    )
    drift_warn_psi: float = _s(0.1, "PSI at or above which a feature's drift state is 'warn'.")
    drift_alert_psi: float = _s(0.25, "PSI at or above which a feature's drift state is 'alert'.")
    database_url: str = _s(
        "",
        "PostgreSQL URL (postgresql://user@host:5432/db) for every log, the registry and "
        "deployments, shared by several service processes. Empty: the embedded SQLite backend "
        "in data_dir.",
    )
    database_schema: str = _s(
        "offerloop", "PostgreSQL schema offerloop's tables live in (created if missing)."
    )
    database_timeout_seconds: float = _s(
        10.0,
        "PostgreSQL: the server cancels a statement after this long (statement_timeout), and "
        "the client cuts a connection that has not answered a second later (a stalled server "
        "or network); raise it for very large training reads.",
    )
    redis_url: str = _s(
        "",
        "Redis URL (redis://host:6379/0) for online features and the live deployment "
        "generation, shared by several service processes. Empty: in-process state.",
    )
    redis_prefix: str = _s(
        "offerloop:", "Prefix of every Redis key offerloop writes (one prefix per deployment)."
    )
    admin_token: str = _s(
        "",
        "Bearer token of the admin HTTP API (/v1/admin/...). Empty: the admin API refuses "
        "every call (403); the decision and event endpoints are unaffected.",
        secret=True,
    )
    online_read_timeout_ms: float = _s(
        25.0,
        "Redis: how long a decision waits for the player's state before it decides on default "
        "features (and says so); after a timeout the store is skipped until it answers again.",
    )
    online_follow_seconds: float = _s(
        0.5,
        "How often `offerloop serve` folds into the online state the events of the log it has "
        "not folded yet (stored by other processes, or while the online store was down).",
    )
    max_body_bytes: int = _s(
        16 * 1024 * 1024, "Largest request body accepted (413 beyond), counted as it is read."
    )
    request_timeout_seconds: float = _s(
        5.0,
        "A request whose work (a store read or write) has not finished after this long is "
        "answered 503 + Retry-After (the dashboard and monitoring views get 30 s).",
    )
    load_shed_ms: float = _s(
        100.0,
        "`offerloop serve`: decide requests that would wait longer than this for the event loop "
        "are shed (503 + Retry-After) instead of answered late; 0 never sheds.",
    )
    http_header_timeout_seconds: float = _s(
        10.0, "A connection whose request line and headers take longer than this is closed."
    )
    http_body_timeout_seconds: float = _s(
        10.0, "A request body that stalls for longer than this between chunks is answered 408."
    )
    http_idle_timeout_seconds: float = _s(
        5.0, "An idle keep-alive connection is closed after this long."
    )
    deployment_refresh_seconds: float = _s(
        0.2, "How often a running service re-reads the deployment state (releases, shadows)."
    )
    decision_log: str = _s(
        "auto",
        "How decisions reach the database. 'journal': appended to a local journal file before "
        "the answer and committed in batches every decision_log_flush_ms (no database round "
        "trip on the request path); 'direct': committed before the answer (the journal then "
        "only holds decisions while the database is down). 'auto': journal under "
        "`offerloop serve`, direct elsewhere (library and CLI callers read the database right "
        "after deciding).",
    )
    decision_log_flush_ms: float = _s(
        20.0, "Journal: how often the batched decisions are committed to the database."
    )
    decision_log_sync: str = _s(
        "interval",
        "Journal: 'interval' fsyncs it only while the database is down (a machine crash may "
        "lose up to decision_log_flush_ms of decisions not yet committed; a process crash "
        "loses none); 'always' fsyncs every decision before its answer.",
    )
    compile_models: bool = _s(
        True,
        "Serve LightGBM models through native code compiled with the machine's C compiler "
        "(cc or gcc), checked against LightGBM before it serves; cached under "
        "<data_dir>/compiled. Off, or without a compiler, LightGBM's own predictor serves.",
    )
    compile_after_decisions: int = _s(
        1000,
        "A version is compiled to native code once it has served this many decisions in a "
        "process (a second or two of the C compiler per model): hot models are compiled, "
        "short-lived ones (a backtest replacing its model every few hundred decisions) never "
        "cost the compiler. 0: at load.",
    )
    shadow_scoring: str = _s(
        "auto",
        "Where shadows are scored: 'process' (a child process, so scoring never holds up a "
        "decision), 'thread' (a thread of this process), 'auto' (process under "
        "`offerloop serve`, thread elsewhere).",
    )

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (not validated, unlike :func:`load_settings`)."""
        return dataclasses.replace(self, **changes)

    def for_service(self) -> Settings:
        """The 'auto' settings resolved for a long-running service (``offerloop serve``):
        decisions journaled, shadows scored in a child process."""
        return self.replace(
            decision_log="journal" if self.decision_log == "auto" else self.decision_log,
            shadow_scoring="process" if self.shadow_scoring == "auto" else self.shadow_scoring,
        )

    @property
    def path(self) -> Path:
        """``data_dir`` as a :class:`~pathlib.Path`."""
        return Path(self.data_dir)


def shown(settings: Settings) -> dict[str, Any]:
    """Every setting's value, safe to print: secrets as ``***`` when set, passwords in URLs
    replaced by ``***``."""
    out: dict[str, Any] = {}
    for f in setting_fields():
        value = getattr(settings, f.name)
        if f.metadata.get("secret") and value:
            value = "***"
        elif isinstance(value, str) and "://" in value:
            value = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", value)
        out[f.name] = value
    return out


def setting_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _coerce(name: str, raw: Any, default: Any, source: str) -> Any:
    kind = type(default)
    try:
        if kind is tuple:
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
                return tuple(raw)
            raise TypeError("expected a list of strings")
        if kind is bool:
            if isinstance(raw, str):
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise TypeError("expected true or false")
            return bool(raw)
        if kind is int and isinstance(raw, float):
            raise TypeError("expected an integer")
        if isinstance(raw, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}")
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput.of(
            [Problem(f"{source}: {name}", f"invalid value {raw!r}: {exc}")]
        ) from exc


def load_settings(
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from overrides > env > TOML file > defaults.

    ``config`` defaults to ``$OFFERLOOP_CONFIG`` or ``./offerloop.toml`` if it exists.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    defaults = {f.name: f.default for f in setting_fields()}
    path = Path(config) if config else Path(env.get("OFFERLOOP_CONFIG", "offerloop.toml"))
    if config and not path.exists():
        raise InvalidInput(f"config file {path} does not exist")
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise InvalidInput.of([Problem(f"{path}: {k}", "unknown setting") for k in unknown])
        for k, v in data.items():
            values[k] = _coerce(k, v, defaults[k], str(path))
    for name, default in defaults.items():
        key = f"OFFERLOOP_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key], default, key)
    for name, value in overrides.items():
        if name not in defaults:
            raise InvalidInput(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, value, defaults[name], "override")
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    problems = []
    if s.attribution_window_hours <= 0:
        problems.append(Problem("attribution_window_hours", "must be > 0"))
    if not 0 < s.max_batch_events <= 100_000:
        problems.append(Problem("max_batch_events", "must be between 1 and 100000"))
    if not 0 <= s.epsilon <= 1:
        problems.append(Problem("epsilon", "must be between 0 and 1"))
    for name in ("gate_confidence", "shadow_confidence", "guard_confidence"):
        if not 0.5 <= getattr(s, name) < 1:
            problems.append(Problem(name, "must be in [0.5, 1)"))
    try:
        clock_of(s.clock)
    except ValueError as exc:
        problems.append(Problem("clock", str(exc)))
    if s.retrain_min_growth < 0:
        problems.append(Problem("retrain_min_growth", "must be >= 0"))
    if s.training_window_days < 0:
        problems.append(Problem("training_window_days", "must be >= 0 (0: the whole log)"))
    if s.retrain_max_age_hours <= 0:
        problems.append(Problem("retrain_max_age_hours", "must be > 0"))
    if s.min_effective_rows < 1:
        problems.append(Problem("min_effective_rows", "must be >= 1"))
    if s.min_rewarded_rows < 0:
        problems.append(Problem("min_rewarded_rows", "must be >= 0"))
    if not 0 <= s.max_error_rate < 1:
        problems.append(Problem("max_error_rate", "must be in [0, 1)"))
    if s.feature_delay_seconds < 0:
        problems.append(Problem("feature_delay_seconds", "must be >= 0"))
    if s.exploration not in ("squarecb", "thompson", "epsilon_greedy", "softmax"):
        problems.append(
            Problem("exploration", "must be squarecb, thompson, epsilon_greedy or softmax")
        )
    if s.squarecb_gamma_scale <= 0:
        problems.append(Problem("squarecb_gamma_scale", "must be > 0"))
    if not 0 <= s.day_one_rules_share <= 0.9:
        problems.append(Problem("day_one_rules_share", "must be between 0 and 0.9"))
    if s.day_one not in ("random", "thompson"):
        problems.append(Problem("day_one", "must be 'random' or 'thompson'"))
    if not 0 < s.day_one_explore < 1:
        problems.append(Problem("day_one_explore", "must be between 0 and 1 (exclusive)"))
    if s.handover not in ("canary", "release"):
        problems.append(Problem("handover", "must be 'canary' or 'release'"))
    try:
        parse_buckets(s.thompson_buckets)
    except ValueError as exc:
        problems.append(Problem("thompson_buckets", str(exc)))
    if not 0 < s.exploration_floor < 1:
        problems.append(Problem("exploration_floor", "must be between 0 and 1 (exclusive)"))
    if s.softmax_temperature <= 0:
        problems.append(Problem("softmax_temperature", "must be > 0"))
    for x in s.learners:
        try:
            learner_parts(x)
        except ValueError as exc:
            problems.append(Problem("learners", str(exc)))
    if not s.learners:
        problems.append(Problem("learners", "must name some of " + ", ".join(LEARNER_KINDS)))
    if s.max_learned_shadows < 1:
        problems.append(Problem("max_learned_shadows", "must be >= 1"))
    if s.latency_tolerance < 1:
        problems.append(Problem("latency_tolerance", "must be >= 1"))
    if not 0 < s.canary_share < 1:
        problems.append(Problem("canary_share", "must be between 0 and 1"))
    if not s.canary_share <= s.canary_max_share < 1:
        problems.append(Problem("canary_max_share", "must be in [canary_share, 1)"))
    if not 0.5 < s.sequential_confidence < 1:
        problems.append(Problem("sequential_confidence", "must be between 0.5 and 1"))
    if s.durability not in ("full", "normal"):
        problems.append(Problem("durability", "must be 'full' or 'normal'"))
    for name, allowed in (
        ("decision_log", ("auto", "journal", "direct")),
        ("decision_log_sync", ("interval", "always")),
        ("shadow_scoring", ("auto", "process", "thread")),
    ):
        if getattr(s, name) not in allowed:
            problems.append(Problem(name, f"must be one of {', '.join(allowed)}"))
    if s.compile_after_decisions < 0:
        problems.append(Problem("compile_after_decisions", "must be >= 0"))
    if not 0 < s.decision_log_flush_ms <= 10_000:
        problems.append(Problem("decision_log_flush_ms", "must be in (0, 10000]"))
    if s.pipeline_schedule:
        try:
            parse_schedule(s.pipeline_schedule)
        except InvalidInput as exc:
            problems.append(Problem("pipeline_schedule", exc.message))
    if s.drift_window_hours <= 0:
        problems.append(Problem("drift_window_hours", "must be > 0"))
    if not 0 < s.drift_warn_psi <= s.drift_alert_psi:
        problems.append(Problem("drift_warn_psi", "must be > 0 and <= drift_alert_psi"))
    if s.database_url and not s.database_url.startswith(("postgresql://", "postgres://")):
        problems.append(Problem("database_url", "must start with postgresql://"))
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(Problem("redis_url", "must start with redis://, rediss:// or unix://"))
    if not 0.1 <= s.database_timeout_seconds <= 3600:
        problems.append(Problem("database_timeout_seconds", "must be in [0.1, 3600]"))
    try:
        parse_rfc3339(s.earliest_event_ts)
    except ValueError as exc:
        problems.append(Problem("earliest_event_ts", str(exc)))
    if s.attribution_max_purchases < 1:
        problems.append(Problem("attribution_max_purchases", "must be >= 1"))
    for name in (
        "online_read_timeout_ms",
        "online_follow_seconds",
        "request_timeout_seconds",
        "http_header_timeout_seconds",
        "http_body_timeout_seconds",
        "http_idle_timeout_seconds",
    ):
        if not getattr(s, name) > 0:
            problems.append(Problem(name, "must be > 0"))
    if s.load_shed_ms < 0:
        problems.append(Problem("load_shed_ms", "must be >= 0"))
    if not 1024 <= s.max_body_bytes <= 1 << 30:
        problems.append(Problem("max_body_bytes", "must be between 1024 and 1073741824"))
    if s.deployment_refresh_seconds < 0:
        problems.append(Problem("deployment_refresh_seconds", "must be >= 0"))
    if problems:
        raise InvalidInput.of(problems)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def settings_toml() -> str:
    """``offerloop.example.toml``, generated from the declaration above: every setting with
    its meaning, environment variable and default, commented out (uncomment to change)."""
    out = [
        "# offerloop.example.toml: every setting, generated from offerloop/_settings.py",
        "# (`offerloop settings --toml`). Copy to offerloop.toml and uncomment what you change.",
        "# Precedence: command-line options > OFFERLOOP_* environment > this file > default.",
        "# Secrets (admin_token, decision_token_secret, passwords in URLs) are better kept in",
        "# the environment than in a file.",
    ]
    for f in setting_fields():
        out.append("")
        out += [f"# {line}" for line in textwrap.wrap(f.metadata["help"], 88)]
        secret = " (secret: never printed)" if f.metadata.get("secret") else ""
        out.append(f"# env: OFFERLOOP_{f.name.upper()}{secret}")
        out.append(f"# {f.name} = {_toml_value(f.default)}")
    return "\n".join(out) + "\n"


def settings_markdown() -> str:
    """The settings table of docs/settings.md, generated from the declaration above."""
    lines = ["| setting | env | default | meaning |", "| --- | --- | --- | --- |"]
    for f in setting_fields():
        default = f.default
        shown = "[]" if default == () else repr(default).replace("'", '"')
        lines.append(
            f"| `{f.name}` | `OFFERLOOP_{f.name.upper()}` | `{shown}` | {f.metadata['help']} |"
        )
    return "\n".join(lines) + "\n"
