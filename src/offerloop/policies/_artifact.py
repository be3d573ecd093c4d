"""Policy artifacts: canonical JSON (never pickle), identified by their sha256.

``load_policy`` refuses bytes whose sha256 differs from the one recorded in the registry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from offerloop._errors import ArtifactCorrupt
from offerloop.policies._base import Policy, RewardModel
from offerloop.policies._explore import EpsilonGreedy
from offerloop.policies._linear import LinearRevenue
from offerloop.policies._simple import RandomPolicy, RulesPolicy

__all__ = ["FORMAT", "dump_policy", "load_policy", "sha256"]

FORMAT = "offerloop.policy/1"
_POLICIES: dict[str, type[Policy]] = {
    RandomPolicy.kind: RandomPolicy,
    RulesPolicy.kind: RulesPolicy,
}
_MODELS: dict[str, type[RewardModel]] = {LinearRevenue.kind: LinearRevenue}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_policy(policy: Policy) -> bytes:
    params = policy.get_params()
    if isinstance(policy, EpsilonGreedy):
        params = {"offers": policy.offers, "epsilon": policy.epsilon}
    doc = {"format": FORMAT, "kind": policy.kind, "params": params, "state": policy.state()}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def load_policy(data: bytes, expected_sha256: str, name: str = "artifact") -> Policy:
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
    if kind == EpsilonGreedy.kind:
        model_cls = _MODELS[state["model_kind"]]
        model = model_cls(**state["model_params"])
        policy: Policy = EpsilonGreedy(model=model, **params)
    else:
        policy = _POLICIES[kind](**params)
    policy.load_state(state)
    return policy
