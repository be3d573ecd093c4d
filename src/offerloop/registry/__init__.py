"""Model registry (versions, artifacts, lineage) and deployments (released, shadow, history)."""

from offerloop.registry._day_one import bootstrap, prior_thompson
from offerloop.registry._deployments import (
    CANARY,
    MODES,
    OUT_ACTIONS,
    RELEASED,
    SHADOW,
    Deployments,
    DeploymentState,
    release_stack,
    transition_doc,
)
from offerloop.registry._registry import (
    Registry,
    code_version,
    dump_params,
    model_doc,
    version_label,
)

__all__ = [
    "CANARY",
    "MODES",
    "OUT_ACTIONS",
    "RELEASED",
    "SHADOW",
    "DeploymentState",
    "Deployments",
    "Registry",
    "bootstrap",
    "code_version",
    "dump_params",
    "model_doc",
    "prior_thompson",
    "release_stack",
    "transition_doc",
    "version_label",
]
