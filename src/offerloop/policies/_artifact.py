"""Policy artifacts: canonical JSON (never pickle), identified by their sha256.

``load_policy`` refuses bytes whose sha256 differs from the one recorded in the registry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from offerloop._errors import ArtifactCorrupt
from offerloop.policies._base import Policy, RewardModel
from offerloop.policies._calibration import CalibratedThompson
from offerloop.policies._explore import EpsilonGreedy, InverseGap, Softmax
from offerloop.policies._gbt import GBTPurchase, GBTRevenue
from offerloop.policies._linear import LinearRevenue
from offerloop.policies._simple import FixedPolicy, RandomPolicy, RulesPolicy
from offerloop.policies._thompson import BucketBeta, ThompsonSampling

__all__ = [
    "FORMAT",
    "POLICIES",
    "REWARD_MODELS",
    "WRAPPERS",
    "dump_policy",
    "load_policy",
    "sha256",
]

FORMAT = "offerloop.policy/1"
# every kind an artifact can hold: the registries the conformance suites run over
# (offerloop.testing); a policy kind not listed here cannot be loaded, so none can skip them
_PLAIN: dict[str, type[Policy]] = {
    RandomPolicy.kind: RandomPolicy,
    RulesPolicy.kind: RulesPolicy,
    FixedPolicy.kind: FixedPolicy,
}
WRAPPERS: dict[str, type[EpsilonGreedy]] = {  # a policy over a reward model
    EpsilonGreedy.kind: EpsilonGreedy,
    Softmax.kind: Softmax,
    InverseGap.kind: InverseGap,
    ThompsonSampling.kind: ThompsonSampling,
    CalibratedThompson.kind: CalibratedThompson,
}
REWARD_MODELS: dict[str, type[RewardModel]] = {
    LinearRevenue.kind: LinearRevenue,
    GBTRevenue.kind: GBTRevenue,
    GBTPurchase.kind: GBTPurchase,
    BucketBeta.kind: BucketBeta,
}
POLICIES: dict[str, type[Policy]] = {**_PLAIN, **WRAPPERS}


def sha256(data: bytes) -> str:
    """The hex SHA-256 digest of ``data``: how the registry identifies an artifact."""
    return hashlib.sha256(data).hexdigest()


def dump_policy(policy: Policy) -> bytes:
    """The policy's artifact: canonical JSON (sorted keys, compact) of its kind, parameters and
    fitted state; a wrapper's reward model travels in its state. ValueError on NaN or infinity."""
    params = policy.get_params()
    if isinstance(policy, EpsilonGreedy):
        params = {k: v for k, v in params.items() if k != "model"}
    doc = {"format": FORMAT, "kind": policy.kind, "params": params, "state": policy.state()}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def load_policy(data: bytes, expected_sha256: str, name: str = "artifact") -> Policy:
    """The fitted policy an artifact holds. Raises ArtifactCorrupt if the bytes' sha256 is not
    ``expected_sha256`` or they are not a valid artifact; ``name`` labels the message."""
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactCorrupt(
            f"{name}: sha256 is {actual[:12]}…, the registry recorded {expected_sha256[:12]}…; "
            "refusing to load it"
        )
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        return _build(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactCorrupt(f"{name}: not a valid policy artifact: {exc}") from exc


def _build(doc: dict[str, Any]) -> Policy:
    kind, params, state = doc["kind"], doc["params"], doc["state"]
    if kind in WRAPPERS:
        model = REWARD_MODELS[state["model_kind"]](**state["model_params"])
        policy: Policy = WRAPPERS[kind](model=model, **params)
    else:
        policy = _PLAIN[kind](**params)
    policy.load_state(state)
    return policy
