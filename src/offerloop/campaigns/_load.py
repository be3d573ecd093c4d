"""Load and validate campaign TOML files, reporting every problem with its location."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from offerloop._clock import LIFETIME, parse_duration, parse_rfc3339
from offerloop._errors import CampaignInvalid, Problem
from offerloop.campaigns._model import (
    CAP_COUNTS,
    CAP_SCOPES,
    CONTROLS,
    OPERATORS,
    Bundle,
    Campaign,
    Cap,
    Condition,
    Message,
    Rule,
    offer_id,
)

__all__ = ["default_campaign_path", "load_campaign", "load_campaigns", "parse_campaign"]

_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_COND = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$")


def default_campaign_path() -> Path:
    """The path of the campaign shipped with offerloop (``default.toml``, the simulated game's)."""
    return Path(str(resources.files("offerloop.campaigns") / "default.toml"))


def load_campaign(path: str | Path, features: Collection[str] | None = None) -> Campaign:
    """Read and validate a campaign TOML file; ``features`` (if given) are the names rules may
    test. Raises CampaignInvalid listing every problem, or if the file cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignInvalid(f"{path}: cannot read campaign file: {exc.strerror}") from exc
    return parse_campaign(text, source=path.name, features=features)


def load_campaigns(
    paths: Iterable[str | Path], features: Collection[str] | None = None
) -> dict[str, Campaign]:
    """Load several campaign files, by id; CampaignInvalid if two define the same id."""
    campaigns: dict[str, Campaign] = {}
    for p in paths:
        c = load_campaign(p, features)
        if c.id in campaigns:
            raise CampaignInvalid(f"{p}: campaign id {c.id!r} is defined twice")
        campaigns[c.id] = c
    return campaigns


def parse_campaign(
    text: str, source: str = "campaign.toml", features: Collection[str] | None = None
) -> Campaign:
    """Parse campaign TOML; ``features`` (if given) are the names rules may test."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignInvalid(f"{source}: not valid TOML: {exc}") from exc
    v = _Validator(source)
    result = v.campaign(data, features)
    if v.problems or result is None:
        raise CampaignInvalid.of(v.problems)
    return result


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def bad(self, loc: str, msg: str) -> None:
        self.problems.append(Problem(f"{self.source}: {loc}" if loc else self.source, msg))

    def ident(self, data: dict[str, Any], key: str, loc: str) -> str | None:
        value = data.get(key)
        if value is None:
            self.bad(f"{loc}{key}", "is required")
            return None
        if not isinstance(value, str) or not _ID.match(value):
            self.bad(
                f"{loc}{key}",
                "must be a lowercase identifier (letters, digits, _ and -, at most 64)",
            )
            return None
        return value

    def unknown_keys(self, data: dict[str, Any], allowed: set[str], loc: str) -> None:
        for k in sorted(set(data) - allowed):
            self.bad(f"{loc}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def table_list(self, data: dict[str, Any], key: str) -> list[Any]:
        items = data.get(key)
        if items is None:
            if key not in ("rules", "caps"):
                self.bad(key, "is required (a list of tables)")
            return []
        if not isinstance(items, list):
            self.bad(key, "must be a list of tables ([[" + key + "]])")
            return []
        return items

    def campaign(self, data: dict[str, Any], features: Collection[str] | None) -> Campaign | None:
        self.unknown_keys(
            data,
            {
                *("id", "name", "bundles", "messages", "rules", "default_offer"),
                *("start", "end", "caps", "control_share", "control"),
            },
            "",
        )
        cid = self.ident(data, "id", "")
        start, end = self.moment(data, "start"), self.moment(data, "end")
        if start is not None and end is not None and end <= start:
            self.bad("end", "must be after start")
        name = data.get("name", cid or "")
        if not isinstance(name, str):
            self.bad("name", "must be a string")
        bundles = self.unique(
            [self.bundle(b, i, features) for i, b in enumerate(self.table_list(data, "bundles"))],
            "bundles",
        )
        messages = self.unique(
            [self.message(m, i, features) for i, m in enumerate(self.table_list(data, "messages"))],
            "messages",
        )
        if not bundles and "bundles" in data:
            self.bad("bundles", "needs at least one bundle")
        if not messages and "messages" in data:
            self.bad("messages", "needs at least one message")
        offer_ids = {offer_id(b.id, m.id) for b in bundles for m in messages}
        rules = [
            self.rule(r, i, offer_ids, features)
            for i, r in enumerate(self.table_list(data, "rules"))
        ]
        caps = [self.cap(c, i) for i, c in enumerate(self.table_list(data, "caps"))]
        share = data.get("control_share", 0.0)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 0.5:
            self.bad("control_share", f"must be a share from 0 to 0.5, not {share!r}")
            share = 0.0
        control = data.get("control", "random")
        if control not in CONTROLS:
            self.bad("control", f"must be one of {', '.join(CONTROLS)}, not {control!r}")
        default = data.get("default_offer")
        if default is None and bundles and messages:
            default = offer_id(bundles[0].id, messages[0].id)
        if not isinstance(default, str) or (offer_ids and default not in offer_ids):
            self.bad("default_offer", f"{default!r} is not an offer of this campaign")
        if self.problems or cid is None:
            return None
        assert isinstance(default, str)
        return Campaign(
            id=cid,
            name=str(name),
            bundles=tuple(bundles),
            messages=tuple(messages),
            rules=tuple(r for r in rules if r is not None),
            default_offer=default,
            start=start,
            end=end,
            caps=tuple(c for c in caps if c is not None),
            control_share=float(share),
            control=str(control),
        )

    def cap(self, c: Any, i: int) -> Cap | None:
        """``per`` (offer, bundle, message or campaign), ``max`` shows, ``within`` a duration."""
        loc = f"caps[{i}]."
        if not isinstance(c, dict):
            self.bad(f"caps[{i}]", "must be a table")
            return None
        self.unknown_keys(c, {"per", "max", "within", "counts"}, loc)
        per, limit, within = c.get("per"), c.get("max"), c.get("within")
        counts = c.get("counts", "shows")
        ok = True
        if counts not in CAP_COUNTS:
            self.bad(f"{loc}counts", f"must be one of {', '.join(CAP_COUNTS)}, not {counts!r}")
            ok = False
        if per not in CAP_SCOPES:
            self.bad(f"{loc}per", f"must be one of {', '.join(CAP_SCOPES)}, not {per!r}")
            ok = False
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            self.bad(f"{loc}max", f"must be a whole number of shows >= 1, not {limit!r}")
            ok = False
        seconds = 0.0
        try:
            seconds = parse_duration(within) if isinstance(within, str) else 0.0
        except ValueError as exc:
            self.bad(f"{loc}within", str(exc))
            ok = False
        else:
            if not 0 < seconds < LIFETIME:
                self.bad(f"{loc}within", "must be a duration like 30m, 6h, 7d or 52w")
                ok = False
        if not ok:
            return None
        assert isinstance(per, str)
        assert isinstance(limit, int)
        return Cap(per, limit, seconds, str(counts))

    def moment(self, data: dict[str, Any], key: str) -> float | None:
        """``start``/``end``: a TOML date-time with an offset (``2026-03-02T09:00:00+01:00``)
        or the same as an RFC 3339 string; a time zone is required."""
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                self.bad(key, "needs a time zone (e.g. 2026-03-02T09:00:00+01:00 or ...Z)")
                return None
            return value.timestamp()
        if isinstance(value, str):
            try:
                return parse_rfc3339(value)
            except ValueError as exc:
                self.bad(key, str(exc))
                return None
        self.bad(key, "must be a date-time with a time zone")
        return None

    def conditions(
        self, data: dict[str, Any], key: str, loc: str, features: Collection[str] | None
    ) -> tuple[Condition, ...] | None:
        """A condition string or a list of them (all must hold); None if one is invalid."""
        when = data.get(key, [])
        if isinstance(when, str):
            when = [when]
        if not isinstance(when, list):
            self.bad(f"{loc}{key}", "must be a condition string or a list of them")
            return None
        conds = [self.condition(text, f"{loc}{key}[{j}]", features) for j, text in enumerate(when)]
        if any(c is None for c in conds):
            return None
        return tuple(c for c in conds if c is not None)

    def unique(self, items: list[Any], key: str) -> list[Any]:
        seen: set[str] = set()
        out = []
        for i, item in enumerate(items):
            if item is None:
                continue
            if item.id in seen:
                self.bad(f"{key}[{i}].id", f"duplicate id {item.id!r}")
                continue
            seen.add(item.id)
            out.append(item)
        return out

    def bundle(self, b: Any, i: int, features: Collection[str] | None) -> Bundle | None:
        loc = f"bundles[{i}]."
        if not isinstance(b, dict):
            self.bad(f"bundles[{i}]", "must be a table")
            return None
        self.unknown_keys(b, {"id", "products", "price", "eligible"}, loc)
        bid = self.ident(b, "id", loc)
        eligible = self.conditions(b, "eligible", loc, features)
        price = b.get("price")
        ok = True
        if price is None:
            self.bad(f"{loc}price", "is required")
            ok = False
        elif isinstance(price, bool) or not isinstance(price, int | float):
            self.bad(f"{loc}price", "must be a number")
            ok = False
        elif not price > 0:
            self.bad(f"{loc}price", "must be > 0")
            ok = False
        products = b.get("products")
        if not isinstance(products, dict) or not products:
            self.bad(f"{loc}products", "must be a non-empty table of product = quantity")
            ok = False
        else:
            for k, q in products.items():
                if isinstance(q, bool) or not isinstance(q, int) or q <= 0:
                    self.bad(f"{loc}products.{k}", "quantity must be a positive integer")
                    ok = False
        if not ok or bid is None or eligible is None:
            return None
        assert isinstance(products, dict)
        assert isinstance(price, int | float)
        return Bundle(bid, dict(products), float(price), eligible)

    def message(self, m: Any, i: int, features: Collection[str] | None) -> Message | None:
        loc = f"messages[{i}]."
        if not isinstance(m, dict):
            self.bad(f"messages[{i}]", "must be a table")
            return None
        self.unknown_keys(m, {"id", "text", "eligible"}, loc)
        mid = self.ident(m, "id", loc)
        eligible = self.conditions(m, "eligible", loc, features)
        text = m.get("text")
        if not isinstance(text, str) or not text.strip():
            self.bad(f"{loc}text", "must be a non-empty string")
            return None
        return Message(mid, text, eligible) if mid and eligible is not None else None

    def rule(
        self, r: Any, i: int, offer_ids: set[str], features: Collection[str] | None
    ) -> Rule | None:
        loc = f"rules[{i}]."
        if not isinstance(r, dict):
            self.bad(f"rules[{i}]", "must be a table")
            return None
        self.unknown_keys(r, {"offer", "when"}, loc)
        offer = r.get("offer")
        ok = True
        if not isinstance(offer, str) or (offer_ids and offer not in offer_ids):
            self.bad(f"{loc}offer", f"{offer!r} is not an offer of this campaign")
            ok = False
        conds = self.conditions(r, "when", loc, features)
        return Rule(str(offer), conds) if ok and conds is not None else None

    def condition(self, text: Any, loc: str, features: Collection[str] | None) -> Condition | None:
        m = _COND.match(text) if isinstance(text, str) else None
        if m is None:
            self.bad(
                loc, f"{text!r} is not a condition like 'level >= 10' or 'platform == \"ios\"'"
            )
            return None
        name, op, raw = m.groups()
        assert op in OPERATORS
        if features is not None and name not in features:
            self.bad(loc, f"unknown feature {name!r} (known: {', '.join(sorted(features))})")
            return None
        value: float | str
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            value = raw[1:-1]
            if op not in ("==", "!="):
                self.bad(loc, f"operator {op} needs a number, not a string")
                return None
        else:
            try:
                value = float(raw)
            except ValueError:
                self.bad(loc, f"{raw!r} is neither a number nor a quoted string")
                return None
        return Condition(name, op, value)
