"""The model registry: every version's artifact, checksum, parameters and lineage."""

from __future__ import annotations

import functools
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offerloop._clock import Clock, format_ts
from offerloop._errors import NotFound
from offerloop._version import __version__
from offerloop.backends import Backend, ModelRecord
from offerloop.policies import EpsilonGreedy, Policy, dump_policy, load_policy, sha256

__all__ = ["Registry", "code_version", "dump_params", "version_label"]

LOADED_VERSIONS = 32  # policies a registry keeps loaded (the least recently used go first)


def version_label(policy: Policy) -> str:
    """The readable part of a version name: the learner behind the policy."""
    if isinstance(policy, EpsilonGreedy):
        return policy.model.kind
    return policy.kind


class Registry:
    """Every model version: its content-addressed artifact, sha256, parameters and lineage.
    Loaded policies are cached, at most ``LOADED_VERSIONS`` (the least recently used go first)."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self.backend = backend
        self.clock = clock
        # loaded versions, newest use last; bounded: a service that registers a model every
        # few hours must not keep every one it ever loaded (with its scoring memos)
        self._cache: OrderedDict[str, Policy] = OrderedDict()
        self._lock = threading.Lock()

    def register(
        self,
        campaign: str,
        policy: Policy,
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Store the artifact (content-addressed) and a new version record pointing at it."""
        data = dump_policy(policy)
        digest = sha256(data)
        name = f"{digest}.json"
        if self.backend.get_artifact(name) is None:
            self.backend.put_artifact(name, data)
        version = f"{version_label(policy)}-{self.backend.next_model_number()}"
        record = ModelRecord(
            version=version,
            campaign=campaign,
            kind=policy.kind if not isinstance(policy, EpsilonGreedy) else version_label(policy),
            created_at=self.clock.now(),
            artifact=name,
            sha256=digest,
            params=dump_params(policy),
            lineage=dict(lineage or {}),
            metrics=dict(metrics or {}),
        )
        self.backend.put_model(record)
        return record

    def get(self, version: str) -> ModelRecord:
        """The record of a version; NotFound if there is none."""
        record = self.backend.get_model(version)
        if record is None:
            raise NotFound(f"model version {version!r} does not exist")
        return record

    def list(self, campaign: str | None = None) -> list[ModelRecord]:
        """The records of every version (of one campaign, if given), oldest first."""
        return [m for m in self.backend.list_models() if campaign in (None, m.campaign)]

    def load(self, version: str) -> Policy:
        """The version's policy, verified against its recorded sha256 (cached once verified)."""
        with self._lock:
            cached = self._cache.get(version)
            if cached is not None:
                self._cache.move_to_end(version)
        if cached is not None:
            return cached
        record = self.get(version)
        data = self.backend.get_artifact(record.artifact)
        if data is None:
            raise NotFound(f"artifact {record.artifact} of version {version} is missing")
        policy = load_policy(data, record.sha256, name=f"artifact of {version}")
        with self._lock:
            self._cache[version] = policy
            while len(self._cache) > LOADED_VERSIONS:
                self._cache.popitem(last=False)
        return policy


_BULKY = ("offers", "encoder", "prices", "rules")


def model_doc(m: ModelRecord, mode: str) -> dict[str, Any]:
    """A registered version as the API (``GET /v1/models``) and ``models list --json`` show
    it (one shape); ``mode``: released, canary, shadow, or "" when not deployed."""
    return {
        "version": m.version,
        "campaign": m.campaign,
        "kind": m.kind,
        "created_at": format_ts(m.created_at),
        "mode": mode,
        "sha256": m.sha256,
        "params": dict(m.params),
        "lineage": dict(m.lineage),
        "metrics": dict(m.metrics),
    }


def dump_params(policy: Policy) -> dict[str, Any]:
    """Hyper-parameters worth showing (the artifact holds everything)."""
    params = {k: v for k, v in policy.get_params().items() if k not in (*_BULKY, "model")}
    if isinstance(policy, EpsilonGreedy):
        params["exploration"] = policy.kind
        params["model"] = policy.model.kind
        params.update(
            {f"model.{k}": v for k, v in policy.model.get_params().items() if k not in _BULKY}
        )
    return params


@functools.cache
def code_version() -> str:
    """The git commit of the running code when it runs from a checkout, else the version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", str(here)],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{out}{'.dirty' if dirty else ''}"
