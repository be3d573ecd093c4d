"""Find the user's feature definitions: a module name or a Python file defining FEATURES."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from offerloop._errors import InvalidInput
from offerloop.features._defs import FeatureSet

__all__ = ["DEFAULT_FEATURES", "load_features"]

DEFAULT_FEATURES = "offerloop.features.default"


def load_features(spec: str = "") -> FeatureSet:
    """``spec``: a dotted module name or a path to a ``.py`` file; empty = the default set."""
    spec = spec or DEFAULT_FEATURES
    try:
        if spec.endswith(".py"):
            path = Path(spec)
            if not path.exists():
                raise InvalidInput(f"features: file {spec} does not exist")
            mod_spec = importlib.util.spec_from_file_location(
                f"_offerloop_features_{path.stem}", path
            )
            assert mod_spec is not None
            assert mod_spec.loader is not None
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except InvalidInput:
        raise
    except ImportError as exc:
        raise InvalidInput(f"features: cannot import {spec}: {exc}") from exc
    except (ValueError, TypeError, SyntaxError) as exc:
        raise InvalidInput(f"features: {spec}: {exc}") from exc
    fs = getattr(module, "FEATURES", None)
    if not isinstance(fs, FeatureSet):
        raise InvalidInput(f"features: {spec} must define FEATURES = FeatureSet([...])")
    return fs
