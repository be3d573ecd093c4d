"""Settings, declared once as data, loaded by pydantic-settings.

Each field of :class:`Settings` is one setting: its section, name, type, constraints, default
and help text. Values come from, in order of precedence: explicit overrides (CLI flags) >
``OFFERLOOP_<NAME>`` environment variables > ``offerloop.toml`` > the default here. The file
groups settings in sections (``[serving]``, ``[training]``, ...; :data:`SECTIONS`), each
setting keeping its one name everywhere (``[policy] epsilon = 0.05`` is
``OFFERLOOP_EPSILON`` and ``settings.epsilon``); top-level keys are accepted too. Secrets are
:class:`~pydantic.SecretStr` and passwords in URLs are masked wherever settings are printed
(``repr``, ``offerloop settings``, error messages). ``docs/settings.md`` and
``offerloop.example.toml`` are generated from the declarations; tests check both.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import os
import re
import textwrap
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from offerloop._clock import clock_of, parse_rfc3339
from offerloop._errors import InvalidInput, Problem
from offerloop._schedule import parse_schedule, parse_timezone

__all__ = [
    "LEARNER_KINDS",
    "SECTIONS",
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


def _s(section: str, default: Any, help: str, **constraints: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"section": section}, **constraints)


Names = Annotated[tuple[str, ...], NoDecode]  # from the environment: "a.toml, b.toml"

# The settings' sections in offerloop.toml, in the order the example file lists them.
SECTIONS = {
    "storage": "Where offerloop keeps its logs, registry and online state.",
    "serving": "The HTTP service.",
    "feature_store": "Feature definitions and how the online state follows the event log.",
    "catalog": "Which campaigns (offers) are served.",
    "events": "What POST /v1/events accepts.",
    "attribution": "Which purchases count as a decision's reward.",
    "decisions": "The day-one policy and how decisions are made and logged.",
    "policy": "How learned policies explore.",
    "training": "What retraining reads, trains and compares.",
    "pipeline": "When the pipeline runs, its gate and its controller.",
    "monitoring": "Drift.",
}
_URL_PASSWORD = re.compile(r"(://[^:/@]*):[^@]*@")


def mask_url(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


class Settings(BaseSettings):
    """Every setting of offerloop (see ``docs/settings.md``). Build with
    :func:`load_settings` (file, environment, overrides), or directly (the environment
    applies, no file); immutable: :meth:`replace` makes a validated copy."""

    model_config = SettingsConfigDict(
        env_prefix="OFFERLOOP_", frozen=True, extra="forbid", validate_default=False
    )

    # [storage]
    data_dir: str = _s(
        "storage",
        "offerloop-data",
        "Directory of the embedded backend: SQLite database and model artifacts.",
    )
    durability: Literal["full", "normal"] = _s(
        "storage",
        "full",
        "SQLite synchronous mode: 'full' fsyncs every commit (survives power loss); "
        "'normal' survives a crash of the process but may lose the last commits on power loss.",
    )
    database_url: str = _s(
        "storage",
        "",
        "PostgreSQL URL (postgresql://user@host:5432/db) for every log, the registry and "
        "deployments, shared by several service processes. Empty: the embedded SQLite backend "
        "in data_dir.",
    )
    database_schema: str = _s(
        "storage", "offerloop", "PostgreSQL schema offerloop's tables live in (created if missing)."
    )
    database_timeout_seconds: float = _s(
        "storage",
        10.0,
        "PostgreSQL: the server cancels a statement after this long (statement_timeout), and "
        "the client cuts a connection that has not answered a second later (a stalled server "
        "or network); raise it for very large training reads.",
        ge=0.1,
        le=3600,
    )
    redis_url: str = _s(
        "storage",
        "",
        "Redis URL (redis://host:6379/0) for online features and the live deployment "
        "generation, shared by several service processes. Empty: in-process state.",
    )
    redis_prefix: str = _s(
        "storage",
        "offerloop:",
        "Prefix of every Redis key offerloop writes (one prefix per deployment).",
    )
    log_url: str = _s(
        "storage",
        "",
        "NATS servers with JetStream (nats://a:4222,nats://b:4222): events and decisions are "
        "acknowledged once this replicated log stored them (de-duplicated by id), and the "
        "service's consumers commit them to the database from it. Empty: the database (with "
        "the local journal) is the system of record.",
    )
    log_stream: str = _s(
        "storage",
        "OFFERLOOP",
        "The JetStream stream of log_url (created if missing; subjects <stream>.event and "
        "<stream>.decision).",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
    )
    log_replicas: int = _s(
        "storage",
        1,
        "Replicas of a stream log_url creates (3 on a 3-node cluster: an append survives the "
        "loss of any one node).",
        ge=1,
        le=5,
    )
    # [serving]
    host: str = _s(
        "serving", "127.0.0.1", "Interface `offerloop serve` binds (0.0.0.0: every one)."
    )
    port: int = _s("serving", 8000, "TCP port `offerloop serve` listens on.", ge=1, le=65535)
    clock: str = _s(
        "serving",
        "system",
        "Where time comes from: 'system' (the wall clock), 'manual' (starts now, then moves "
        "only through POST /v1/admin/clock) or 'manual:2026-01-01T00:00:00Z': decisions, "
        "attribution windows, schedules and pipeline runs all follow it (backtests, rehearsals).",
    )
    admin_token: SecretStr = _s(
        "serving",
        SecretStr(""),
        "Bearer token of the admin HTTP API (/v1/admin/...). Empty: the admin API refuses "
        "every call (403); the decision and event endpoints are unaffected.",
    )
    max_body_bytes: int = _s(
        "serving",
        16 * 1024 * 1024,
        "Largest request body accepted (413 beyond), counted as it is read.",
        ge=1024,
        le=1 << 30,
    )
    request_timeout_seconds: float = _s(
        "serving",
        5.0,
        "A request whose work (a store read or write) has not finished after this long is "
        "answered 503 + Retry-After (the dashboard and monitoring views get 30 s).",
        gt=0,
    )
    load_shed_ms: float = _s(
        "serving",
        100.0,
        "`offerloop serve`: decide requests that would wait longer than this for the event loop "
        "are shed (503 + Retry-After) instead of answered late; 0 never sheds.",
        ge=0,
    )
    http_header_timeout_seconds: float = _s(
        "serving",
        10.0,
        "A connection whose request line and headers take longer than this is closed.",
        gt=0,
    )
    http_body_timeout_seconds: float = _s(
        "serving",
        10.0,
        "A request body that stalls for longer than this between chunks is answered 408.",
        gt=0,
    )
    http_idle_timeout_seconds: float = _s(
        "serving", 5.0, "An idle keep-alive connection is closed after this long.", gt=0
    )
    # [feature_store]
    features: str = _s(
        "feature_store",
        "",
        "Feature definitions: a module name (mygame.features) or a .py file defining "
        "FEATURES. Empty: offerloop.features.default, the simulated game's.",
    )
    feature_delay_seconds: float = _s(
        "feature_store",
        0.0,
        "Serve features as of this many seconds ago (to measure what stale features cost); "
        "0 serves them fresh.",
        ge=0,
    )
    batch_poll_seconds: float = _s(
        "feature_store",
        5.0,
        "How often the service looks for newly landed batch-source files (0: a library "
        "caller looks at every read; the service still waits 0.1 s between looks).",
        ge=0,
    )
    online_read_timeout_ms: float = _s(
        "feature_store",
        25.0,
        "Redis: how long a decision waits for the player's state before it decides on default "
        "features (and says so); after a timeout the store is skipped until it answers again.",
        gt=0,
    )
    online_follow_seconds: float = _s(
        "feature_store",
        0.5,
        "How often `offerloop serve` folds into the online state the events of the log it has "
        "not folded yet (stored by other processes, or while the online store was down).",
        gt=0,
    )
    snapshot_interval_seconds: float = _s(
        "feature_store",
        600.0,
        "`offerloop serve` without redis_url: write a snapshot of the online state to "
        "data_dir this often, and when it stops, so a restart reads the snapshot and the "
        "log after it instead of the whole log. 0: never (every start replays the log).",
        ge=0,
    )
    offline_store: Literal["columnar", "log"] = _s(
        "feature_store",
        "columnar",
        "What training sets, backfills and skew reports read events from: columnar (typed "
        "Parquet files under data_dir/columnar, following the log: integer player keys, "
        "one directory per day; brought up to date before each read) or log (the event log "
        "itself: the SQLite file or the PostgreSQL table, its JSON properties parsed at "
        "every read). Both give the same values.",
    )
    columnar_sync_seconds: float = _s(
        "feature_store",
        60.0,
        "`offerloop serve` with offline_store columnar: append the log's new events to the "
        "columnar store and merge its small files this often, so a training set only has "
        "the last minutes to add. 0: only when a pipeline run reads it.",
        ge=0,
    )
    # [catalog]
    campaigns: Names = _s(
        "catalog",
        (),
        "Campaign TOML files to serve. Empty: the default campaign shipped for the simulated game.",
    )
    default_campaign: str = _s(
        "catalog",
        "",
        "Campaign used when a decision request names none. Empty: the first campaign loaded.",
    )
    # [events]
    max_batch_events: int = _s(
        "events",
        1000,
        "Largest number of events accepted in one POST /v1/events.",
        gt=0,
        le=100_000,
    )
    max_future_seconds: float = _s(
        "events",
        300.0,
        "Events stamped further than this into the future (clock skew) are rejected.",
        ge=0,
    )
    earliest_event_ts: str = _s(
        "events",
        "2000-01-01T00:00:00Z",
        "Events stamped before this RFC 3339 time are refused (a client's clock or encoding "
        "bug, such as year 0001).",
    )
    # [attribution]
    attribution_window_hours: float = _s(
        "attribution",
        24.0,
        "A purchase counts as a decision's reward if it happens within this many hours.",
        gt=0,
    )
    attribution_price_tolerance: float = _s(
        "attribution",
        0.01,
        "A purchase counts for the decision it names only if its amount is the price the offer "
        "was shown at, within this relative tolerance (or one cent); negative: any amount "
        "counts. Both are recorded either way.",
    )
    attribution_max_purchases: int = _s(
        "attribution",
        1,
        "At most this many purchases count for one decision (the first ones by time).",
        ge=1,
    )
    decision_token_secret: SecretStr = _s(
        "attribution",
        SecretStr(""),
        "Secret for signed decision tokens: when set, every decide answer carries a "
        "decision_token (HMAC of decision and player) and a purchase counts only if it sends "
        "it back as properties.decision_token. Empty: no tokens.",
    )
    # [decisions]
    day_one: Literal["random", "thompson"] = _s(
        "decisions",
        "random",
        "The policy released on day one (bootstrap), before any learner has data: 'random' "
        "(uniform over the offers, the campaign's rules in shadow) or 'thompson' (Thompson "
        "sampling under the uninformative prior of the thompson learner: every offer's "
        "purchase probability uniform on [0, 1], so offers are tried in proportion to their "
        "chance of earning the most, the expensive ones first; day_one_explore of the "
        "decisions spread uniformly). day_one_rules_share > 0 releases the rules instead.",
    )
    day_one_rules_share: float = _s(
        "decisions",
        0.0,
        "The policy released on day one (bootstrap): this share of decisions follows the "
        "campaign's rules, the rest is spread uniformly over the offers. 0: uniform random; "
        "0.5: half the rules' revenue from the first request while every offer keeps "
        "0.5/n_offers, so every learner and every off-policy estimate can use the logs. At "
        "most 0.9: a day-one policy must explore. In the simulated world 0.8 earned more over "
        "14 days but less in the last 3 (docs/architecture.md).",
        ge=0,
        le=0.9,
    )
    day_one_explore: float = _s(
        "decisions",
        0.2,
        "With day_one = 'thompson': the share of day-one decisions spread uniformly over the "
        "offers (every offer keeps day_one_explore/n_offers), so the first learners and every "
        "off-policy estimate see every offer.",
        gt=0,
        lt=1,
    )
    handover: Literal["canary", "release"] = _s(
        "decisions",
        "canary",
        "How the first learned model takes over from the day-one policy: 'canary' (a canary "
        "at canary_share, released on live evidence) or 'release' (released at once unless "
        "the held-out rows say it is worse; watched as a fresh release and rolled back to the "
        "day-one policy if it earns less).",
    )
    decision_seed: int = _s(
        "decisions",
        -1,
        "Seed of the random draws of decisions; -1 draws a fresh seed at start.",
        ge=-1,
    )
    decision_log: Literal["auto", "journal", "direct"] = _s(
        "decisions",
        "auto",
        "How decisions reach the database. 'journal': appended to a local journal file before "
        "the answer and committed in batches every decision_log_flush_ms (no database round "
        "trip on the request path); 'direct': committed before the answer (the journal then "
        "only holds decisions while the database is down). 'auto': journal under "
        "`offerloop serve`, direct elsewhere (library and CLI callers read the database right "
        "after deciding).",
    )
    decision_log_flush_ms: float = _s(
        "decisions",
        20.0,
        "Journal: how often the batched decisions are committed to the database.",
        gt=0,
        le=10_000,
    )
    decision_log_sync: Literal["interval", "always"] = _s(
        "decisions",
        "interval",
        "Journal: 'interval' fsyncs it only while the database is down (a machine crash may "
        "lose up to decision_log_flush_ms of decisions not yet committed; a process crash "
        "loses none); 'always' fsyncs every decision before its answer.",
    )
    compile_models: bool = _s(
        "decisions",
        True,
        "Serve LightGBM models through native code compiled with the machine's C compiler "
        "(cc or gcc), checked against LightGBM before it serves; cached under "
        "<data_dir>/compiled. Off, or without a compiler, LightGBM's own predictor serves.",
    )
    compile_after_decisions: int = _s(
        "decisions",
        1000,
        "A version is compiled to native code once it has served this many decisions in a "
        "process (a second or two of the C compiler per model): hot models are compiled, "
        "short-lived ones (a backtest replacing its model every few hundred decisions) never "
        "cost the compiler. 0: at load.",
        ge=0,
    )
    shadow_scoring: Literal["auto", "process", "thread"] = _s(
        "decisions",
        "auto",
        "Where shadows are scored: 'process' (a child process, so scoring never holds up a "
        "decision), 'thread' (a thread of this process), 'auto' (process under "
        "`offerloop serve`, thread elsewhere).",
    )

    deployment_refresh_seconds: float = _s(
        "decisions",
        0.2,
        "How often a running service re-reads the deployment state (releases, shadows).",
        ge=0,
    )
    # [policy]
    epsilon: float = _s(
        "policy",
        0.1,
        "Exploration share of learned policies: every offer keeps at least epsilon/n_offers.",
        ge=0,
        le=1,
    )
    exploration: Literal["squarecb", "thompson", "epsilon_greedy", "softmax"] = _s(
        "policy",
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
        "policy",
        "spend_total:0,20,60 hours_since_purchase:36 platform",
        "The buckets of players of the thompson learner and of thompson exploration: "
        "features separated by spaces, a numeric one with increasing cut points "
        "(spend_total:0,20,60 is four tiers: <= 0, <= 20, <= 60, more), one without "
        "buckets by value.",
    )
    squarecb_gamma_scale: float = _s(
        "policy",
        3.0,
        "squarecb exploration: gamma = this x sqrt(n_offers x training rows), in 1/revenue; "
        "the expected cost of exploring is at most n_offers/gamma per decision.",
        gt=0,
    )
    exploration_floor: float = _s(
        "policy",
        0.02,
        "squarecb and thompson exploration: this share of every decision is spread uniformly "
        "over the offers, so off-policy evaluation of any other policy stays possible.",
        gt=0,
        lt=1,
    )
    softmax_temperature: float = _s(
        "policy", 0.2, "Temperature of softmax exploration, in revenue per decision.", gt=0
    )
    # [training]
    learners: Names = _s(
        "training",
        ("linear", "gbt", "purchase_gbt"),
        "Learners retrain trains and compares: linear (ridge, player × offer interactions), "
        "gbt (LightGBM revenue), purchase_gbt (LightGBM purchase probability × price), "
        "thompson (Beta posterior of the purchase probability per bucket of thompson_buckets "
        "and offer, served by Thompson sampling with exact propensities); "
        "each optionally with a recency half-life (purchase_gbt@2d: a row weighs half as "
        "much for every 2 days it is older than the newest), judged like any other learner.",
    )
    min_training_decisions: int = _s(
        "training", 200, "Retraining is skipped with fewer decisions whose reward is final.", ge=0
    )
    warm_start_logs: Names = _s(
        "training",
        (),
        "Imported logs (offerloop logs import) whose decisions retrain adds to the campaign's "
        "own, older than any of them: a first model before offerloop has logged anything. "
        "Their actions must be the campaign's offers; columns named like features are used.",
    )
    refit_on_all: bool = _s(
        "training",
        True,
        "Retrain judges each candidate as fitted on the older rows against the newest ones, "
        "then deploys the winner refitted on all rows (its lineage names the judged fit).",
    )
    retrain_min_growth: float = _s(
        "training",
        0.0,
        "Cadence: a pipeline run retrains only once the decisions with a final reward have "
        "grown by this share since the last run that retrained (or retrain_max_age_hours "
        "passed); otherwise it runs the controller alone. With a frequent pipeline_schedule "
        "(hourly), models follow each other within hours while every decision counts and "
        "slow to retrain_max_age_hours as data accumulates. 0: every run retrains.",
        ge=0,
    )
    retrain_max_age_hours: float = _s(
        "training",
        6.0,
        "Cadence: a run retrains whatever the growth once the last training is this old "
        "(in clock hours; with retrain_min_growth).",
        gt=0,
    )
    training_window_days: float = _s(
        "training",
        28.0,
        "Retraining (and a judge fitted on the spot) reads only the decisions of this many "
        "days before the newest with a final reward: what a run reads stays bounded however "
        "long the log grows (recency half-lives weigh older rows little anyway). 0: the "
        "whole log.",
        ge=0,
    )
    ridge_alpha: float = _s("training", 1.0, "L2 penalty of the linear learned policy.", ge=0)
    min_effective_rows: float = _s(
        "training",
        50.0,
        "Off-policy evidence: an estimate whose importance weights have fewer effective rows "
        "than this is too thin; the gate and the controller refuse to decide on it.",
        ge=1,
    )
    min_rewarded_rows: int = _s(
        "training",
        10,
        "Off-policy evidence: an estimate resting on fewer rewarded rows (where the policy "
        "could have chosen the logged offer) is too thin to decide on.",
        ge=0,
    )
    # [pipeline]
    pipeline_schedule: str = _s(
        "pipeline",
        "",
        "Run the pipeline inside `offerloop serve` on this schedule: an interval ('24h', '30m', "
        "anchored at the epoch), a 5-field cron expression ('0 3 * * *', '0 */6 * * MON-FRI') "
        "or a macro ('@daily', '@hourly'), cron read in pipeline_timezone. Empty: no "
        "in-service schedule.",
    )
    pipeline_timezone: str = _s(
        "pipeline",
        "UTC",
        "IANA time zone (Europe/Berlin) a cron pipeline_schedule is read in: '0 3 * * *' "
        "fires at 03:00 local time on both sides of a daylight-saving change.",
    )
    gate_margin: float = _s(
        "pipeline",
        0.0,
        "Pipeline gate: a new learner goes to canary (or shadow, while a canary runs) only if "
        "the lower bound of its doubly robust uplift over the release exceeds this (revenue "
        "per decision).",
    )
    gate_confidence: float = _s(
        "pipeline",
        0.8,
        "One-sided confidence of the pipeline gate's lower bound (0.8: the uplift beats the "
        "margin with 80% confidence). Lenient on purpose: a shadow is never shown, and the "
        "controller demands live evidence before any player sees it.",
        ge=0.5,
        lt=1,
    )
    scoring_budget_ms: float = _s(
        "pipeline",
        5.0,
        "Model check and latency guardrail: a candidate's p99 CPU time to score one decision "
        "must stay below this (milliseconds).",
        gt=0,
    )
    latency_tolerance: float = _s(
        "pipeline",
        1.5,
        "Latency guardrail: a canary (or fresh release) breaks it only when its p99 scoring time "
        "(CPU time of the scoring thread: a busy host does not count against the model) is "
        "over scoring_budget_ms and over this many times the release's p99 measured over "
        "the same interval, in most of 5 readings.",
        ge=1,
    )
    canary_share: float = _s(
        "pipeline",
        0.2,
        "Smallest share of players a canary serves: a new canary starts here (or higher, as "
        "its evidence allows) and moves with the evidence up to canary_max_share.",
        gt=0,
        lt=1,
    )
    canary_max_share: float = _s(
        "pipeline",
        0.9,
        "Largest share a canary reaches before release: its share is the probability that it "
        "earns more than the release (live doubly robust evidence; while that is too thin, "
        "the realised revenue of its players against the release's), within "
        "[canary_share, canary_max_share].",
        gt=0,
        lt=1,
    )
    sequential_confidence: float = _s(
        "pipeline",
        0.95,
        "Confidence of the controller's always-valid (time-uniform) intervals: a canary is "
        "released once the lower bound of its live uplift is above 0, rolled back and a "
        "shadow retired once the upper bound is below 0, judged again at every run without "
        "peeking bias.",
        gt=0.5,
        lt=1,
    )
    max_learned_shadows: int = _s(
        "pipeline",
        3,
        "Learned candidates kept in shadow at once: the oldest keep their place (they have "
        "gathered the most live evidence) and the newest slot takes each new candidate.",
        ge=1,
    )
    shadow_min_decisions: int = _s(
        "pipeline",
        500,
        "The controller moves a shadow to canary after this many matured shadow-scored "
        "decisions, when its off-policy estimate on them beats the release.",
        ge=0,
    )
    canary_min_decisions: int = _s(
        "pipeline",
        100,
        "Matured canary decisions before the controller compares its realised revenue with the "
        "release's (an always-valid test, asked again at every run).",
        ge=0,
    )
    canary_promote_decisions: int = _s(
        "pipeline",
        1000,
        "Matured canary decisions after which a canary that is not worse is released.",
        ge=0,
    )
    shadow_confidence: float = _s(
        "pipeline",
        0.8,
        "One-sided confidence with which a shadow's live off-policy uplift over the release "
        "must be positive before the controller makes it the canary (0.5: the point estimate).",
        ge=0.5,
        lt=1,
    )
    guard_confidence: float = _s(
        "pipeline",
        0.95,
        "One-sided confidence with which a canary (or fresh release) must be worse in realised "
        "revenue per decision before the controller rolls it back.",
        ge=0.5,
        lt=1,
    )
    release_watch_decisions: int = _s(
        "pipeline",
        1000,
        "A fresh release is watched for this many matured decisions: if its realised revenue "
        "per decision is worse than the previous release's (guard_confidence), it is rolled back.",
        ge=0,
    )
    max_error_rate: float = _s(
        "pipeline",
        0.01,
        "Guardrail: a canary (or shadow) that fails to score more than this share of its "
        "decisions is taken out of service.",
        ge=0,
        lt=1,
    )
    # [monitoring]
    drift_window_hours: float = _s(
        "monitoring",
        24.0,
        "Drift compares the decisions of this many recent hours with the released version's "
        "training window (or the log's first such window for untrained releases).",
        gt=0,
    )
    drift_warn_psi: float = _s(
        "monitoring", 0.1, "PSI at or above which a feature's drift state is 'warn'.", gt=0
    )
    drift_alert_psi: float = _s(
        "monitoring", 0.25, "PSI at or above which a feature's drift state is 'alert'.", gt=0
    )

    @field_validator("campaigns", "warm_start_logs", "learners", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment: comma-separated, or a JSON list
            if value.lstrip().startswith("["):
                return json.loads(value)
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        clock_of(value)
        return value

    @field_validator("earliest_event_ts")
    @classmethod
    def _earliest(cls, value: str) -> str:
        parse_rfc3339(value)
        return value

    @field_validator("thompson_buckets")
    @classmethod
    def _buckets(cls, value: str) -> str:
        parse_buckets(value)
        return value

    @field_validator("learners")
    @classmethod
    def _learners(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name some of " + ", ".join(LEARNER_KINDS))
        for x in value:
            learner_parts(x)
        return value

    @field_validator("pipeline_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            parse_timezone(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("log_url")
    @classmethod
    def _log_url(cls, value: str) -> str:
        if value and not all(
            u.strip().startswith(("nats://", "tls://")) for u in value.split(",") if u.strip()
        ):
            raise ValueError("must be nats:// URLs, separated by commas")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _together(self) -> Settings:
        problems = []
        if self.canary_max_share < self.canary_share:
            problems.append("canary_max_share: must be >= canary_share")
        if self.drift_alert_psi < self.drift_warn_psi:
            problems.append("drift_warn_psi: must be <= drift_alert_psi")
        if self.pipeline_schedule:
            try:
                parse_schedule(self.pipeline_schedule, self.pipeline_timezone)
            except InvalidInput as exc:
                problems.append(f"pipeline_schedule: {exc.message}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path, env = _SOURCES.get()
        return (
            init_settings,
            _Environment(settings_cls, env),
            _SectionedToml(settings_cls, path),
        )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) else value

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated (the environment does not apply)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        token = _SOURCES.set((None, {}))
        try:
            return type(self)(**values)
        finally:
            _SOURCES.reset(token)

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

    def to_doc(self) -> dict[str, Any]:
        """Every value as JSON-able data, secrets included (for a child process; never print
        it: :func:`shown` is the printable form). ``Settings(**doc)`` rebuilds the settings."""
        return {
            name: v.get_secret_value() if isinstance(v, SecretStr) else v
            for name, v in ((n, getattr(self, n)) for n in type(self).model_fields)
        }


# the file and environment load_settings reads: (None, None) is no file and os.environ
_SOURCES: contextvars.ContextVar[tuple[Path | None, Mapping[str, str] | None]] = (
    contextvars.ContextVar("offerloop_settings_sources", default=(None, None))
)


class _Environment(EnvSettingsSource):
    """``OFFERLOOP_<NAME>`` variables of ``env`` (default: the process environment)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str] | None) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = os.environ if self._given is None else self._given
        return {k.lower(): v for k, v in env.items() if k.upper().startswith("OFFERLOOP_")}


class _SectionedToml(PydanticBaseSettingsSource):
    """``offerloop.toml``: settings at the top level or in their section's table."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.values = read_toml(path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def section_of(name: str) -> str:
    """The section a setting belongs to in ``offerloop.toml``."""
    extra = Settings.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return str(extra["section"])


def read_toml(path: Path) -> dict[str, Any]:
    """The settings of a TOML file, flattened: InvalidInput names every unknown key, a
    setting in the wrong section and a setting given twice."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror}") from exc
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    problems = []

    def put(key: str, value: Any, where: str) -> None:
        if key not in fields:
            problems.append(Problem(f"{path}: {where}{key}", "unknown setting"))
        elif key in values:
            problems.append(Problem(f"{path}: {where}{key}", "given twice"))
        else:
            values[key] = value

    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, v in value.items():
                if name in fields and section_of(name) != key:
                    problems.append(
                        Problem(f"{path}: [{key}] {name}", f"belongs in [{section_of(name)}]")
                    )
                else:
                    put(name, v, f"[{key}] ")
        elif key in SECTIONS:
            problems.append(Problem(f"{path}: {key}", "a section: write it as a [table]"))
        else:
            put(key, value, "")
    if problems:
        raise InvalidInput.of(problems)
    return values


def shown(settings: Settings) -> dict[str, Any]:
    """Every setting's value, safe to print: secrets as ``***`` when set, passwords in URLs
    replaced by ``***``."""
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "***" if value.get_secret_value() else ""
        elif isinstance(value, str):
            value = mask_url(value)
        out[name] = value
    return out


def setting_fields() -> dict[str, FieldInfo]:
    """Every setting's declaration, in the order of :data:`SECTIONS`."""
    fields = Settings.model_fields
    return {n: fields[n] for s in SECTIONS for n in fields if section_of(n) == s}


def _default(info: FieldInfo) -> Any:
    value = info.default
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def load_settings(
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from overrides > env > TOML file > defaults (``None`` overrides are
    ignored). Raises InvalidInput naming every bad value and where it came from.

    ``config`` defaults to ``$OFFERLOOP_CONFIG`` or ``./offerloop.toml`` if it exists.
    """
    environ = os.environ if env is None else env
    path = Path(config) if config else Path(environ.get("OFFERLOOP_CONFIG", "offerloop.toml"))
    if config and not path.exists():
        raise InvalidInput(f"config file {path} does not exist")
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise InvalidInput.of([Problem(k, "unknown setting") for k in unknown])
    token = _SOURCES.set((path if path.exists() else None, environ))
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise _invalid(exc, given, environ, path) from None
    finally:
        _SOURCES.reset(token)


def _invalid(
    exc: ValidationError, given: Mapping[str, Any], env: Mapping[str, str], path: Path
) -> InvalidInput:
    """A pydantic ValidationError as InvalidInput: each problem names the setting, where its
    value came from and the value (masked when secret)."""
    problems = []
    for e in exc.errors(include_url=False):
        message = str(e["msg"]).removeprefix("Value error, ")
        if not e["loc"]:  # a check across settings: "name: what is wrong; ..."
            for part in message.split("; "):
                name, _, what = part.partition(": ")
                problems.append(Problem(name, what))
            continue
        name = str(e["loc"][0])
        key = f"OFFERLOOP_{name.upper()}"
        source = "override" if name in given else key if key in env else str(path)
        secret = isinstance(Settings.model_fields[name].default, SecretStr)
        value = "***" if secret else mask_url(repr(e["input"]))
        problems.append(Problem(f"{source}: {name}", f"{message} (got {value})"))
    return InvalidInput.of(problems)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def settings_toml() -> str:
    """``offerloop.example.toml``, generated from the declaration above: every setting in its
    section with its meaning, environment variable and default, commented out (uncomment to
    change)."""
    out = [
        "# offerloop.example.toml: every setting, generated from offerloop/_settings.py",
        "# (`offerloop settings --toml`). Copy to offerloop.toml and uncomment what you change.",
        "# Precedence: command-line options > OFFERLOOP_* environment > this file > default.",
        "# A setting has one name everywhere: [policy] epsilon here, OFFERLOOP_EPSILON in",
        "# the environment. Secrets (admin_token, decision_token_secret, passwords in URLs)",
        "# are better kept in the environment than in a file; they are never printed.",
    ]
    section = None
    for name, info in setting_fields().items():
        if section_of(name) != section:
            section = section_of(name)
            out += ["", "", f"# {SECTIONS[section]}", f"[{section}]"]
        out.append("")
        out += [f"# {line}" for line in textwrap.wrap(info.description or "", 88)]
        secret = " (secret: never printed)" if isinstance(info.default, SecretStr) else ""
        out.append(f"# env: OFFERLOOP_{name.upper()}{secret}")
        out.append(f"# {name} = {_toml_value(_default(info))}")
    return "\n".join(out) + "\n"


def settings_markdown() -> str:
    """The settings table of docs/settings.md, generated from the declaration above."""
    lines = [
        "| setting | section | env | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info in setting_fields().items():
        default = _default(info)
        text = "[]" if default == () else repr(default).replace("'", '"')
        lines.append(
            f"| `{name}` | `[{section_of(name)}]` | `OFFERLOOP_{name.upper()}` | `{text}` | "
            f"{info.description} |"
        )
    return "\n".join(lines) + "\n"
