"""Model registry (versions, artifacts, lineage) and deployments (released, shadow, history)."""

from offerloop.registry._deployments import (
    CANARY,
    MODES,
    RELEASED,
    SHADOW,
    Deployments,
    DeploymentState,
    release_stack,
)
from offerloop.registry._registry import Registry, code_version, dump_params, version_label

__all__ = [
    "CANARY",
    "MODES",
    "RELEASED",
    "SHADOW",
    "DeploymentState",
    "Deployments",
    "Registry",
    "code_version",
    "dump_params",
    "release_stack",
    "version_label",
]
