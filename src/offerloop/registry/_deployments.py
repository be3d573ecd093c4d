"""Deployment is not release: which versions serve (released) or only score (shadow).

Every change is a transition recorded with when, what, from which mode to which, why and by
whom. The release history is a stack derived from those records: ``release`` pushes,
``rollback`` pops back to the previous release; ``live_at`` replays them to answer which
version was released at any past moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from offerloop._clock import Clock, format_ts
from offerloop._errors import Conflict, InvalidInput
from offerloop.backends import Backend, DeploymentRecord, TransitionRecord
from offerloop.registry._registry import Registry

__all__ = ["DeploymentState", "Deployments"]

Move = tuple[str, str, str, str]  # (action, version, from_mode, to_mode)
RELEASED = "released"
CANARY = "canary"
SHADOW = "shadow"
MODES = (RELEASED, CANARY, SHADOW)
# how a version leaves deployment, as the history names it (see Deployments.undeploy)
OUT_ACTIONS = ("undeploy", "rollback", "retire")


@dataclass(frozen=True)
class DeploymentState:
    campaign: str
    released: str | None
    shadows: tuple[str, ...]
    generation: int
    canary: str | None = None
    canary_share: float = 0.0

    def mode_of(self, version: str) -> str:
        """The mode ``version`` is deployed in: released, canary, shadow, or "" (not deployed)."""
        if version == self.released:
            return RELEASED
        if version == self.canary:
            return CANARY
        return SHADOW if version in self.shadows else ""


class Deployments:
    """Which versions serve or score in each campaign. Every change is recorded as transitions
    and swapped in atomically against the store's generation (retried when another writer
    moved it). ``on_change(campaign, action)`` is told of every change this object made
    (``deploy``, ``release``, ``canary``, ``undeploy``, ``rollback``) once it is stored: the
    façade counts it and has the decision engine re-read the deployments."""

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        clock: Clock,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.clock = clock
        self.on_change = on_change

    def state(self, campaign: str) -> DeploymentState:
        """The campaign's current deployments, with the store generation read before them."""
        gen = self.backend.generation()
        rows = self.backend.deployments(campaign)
        released = next((d.version for d in rows if d.mode == RELEASED), None)
        shadows = tuple(d.version for d in rows if d.mode == SHADOW)
        canary = next((d for d in rows if d.mode == CANARY), None)
        return DeploymentState(
            campaign,
            released,
            shadows,
            gen,
            canary.version if canary else None,
            canary.share if canary else 0.0,
        )

    # -- transitions ---------------------------------------------------------------------
    def deploy(self, version: str, mode: str = SHADOW, *, actor: str, reason: str = "") -> None:
        """Put a version in shadow (or release it: same as :meth:`release`)."""
        if mode == RELEASED:
            self.release(version, actor=actor, reason=reason)
            return
        if mode == CANARY:
            raise InvalidInput("a canary needs a share: use canary(version, share)")
        if mode != SHADOW:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        campaign = self.registry.get(version).campaign

        def change(st: DeploymentState) -> list[Move]:
            if st.mode_of(version) == SHADOW:
                return []
            if st.mode_of(version) == RELEASED:
                raise Conflict(f"{version} is the released version; roll back or release another")
            return [("deploy", version, "", SHADOW)]

        self._apply(campaign, "deploy", change, actor, reason)

    def release(self, version: str, *, actor: str, reason: str = "") -> None:
        """Serve ``version`` to every player (nothing to do if it is released already); the
        version released until now leaves deployment. NotFound or ArtifactCorrupt if ``version``
        or its artifact cannot be loaded."""
        campaign = self.registry.get(version).campaign
        self.registry.load(version)  # refuse to release what cannot be loaded

        def change(st: DeploymentState) -> list[Move]:
            if st.released == version:
                return []
            moves = [("release", version, st.mode_of(version), RELEASED)]
            if st.released:
                moves.append(("release", st.released, RELEASED, ""))
            return moves

        self._apply(campaign, "release", change, actor, reason)

    def canary(
        self, version: str, share: float, *, actor: str, reason: str = "", replace: bool = True
    ) -> str | None:
        """Serve ``version`` to a stable ``share`` of players; returns the other canary it
        replaced, if any (``replace`` False: Conflict instead, decided on the same state the
        change is swapped in against)."""
        if not 0.0 < share < 1.0:
            raise InvalidInput(f"share must be between 0 and 1 (exclusive), not {share}")
        campaign = self.registry.get(version).campaign
        self.registry.load(version)

        def change(st: DeploymentState) -> list[Move]:
            if st.released == version:
                raise Conflict(f"{version} is the released version; it cannot be a canary")
            if st.canary == version and st.canary_share == share:
                return []
            moves: list[Move] = []
            replaced[:] = [st.canary] if st.canary and st.canary != version else []
            if replaced and not replace:
                raise Conflict(
                    f"{st.canary} is the canary now; pass --replace to put {version} in its place"
                )
            if replaced:
                moves.append(("undeploy", replaced[0], CANARY, ""))
            moves.append(("canary", version, st.mode_of(version), CANARY))
            return moves

        replaced: list[str] = []
        self._apply(campaign, "canary", change, actor, reason or f"canary at {share:.0%}", share)
        return replaced[0] if replaced else None

    def rollback_pair(self, campaign: str, st: DeploymentState | None = None) -> tuple[str, str]:
        """What a rollback would do now: (the release it takes out, the one it releases
        again); Conflict when there is no previous release. ``st``: the state to judge on."""
        st = st or self.state(campaign)
        stack = release_stack(self.backend.transitions(campaign))
        if len(stack) < 2 or st.released != stack[-1]:
            raise Conflict(f"campaign {campaign!r} has no previous release to roll back to")
        return stack[-1], stack[-2]

    def rollback(self, campaign: str, *, actor: str, reason: str = "") -> str:
        """Release the version released before the current one; return it."""
        target: list[str] = []

        def change(st: DeploymentState) -> list[Move]:
            out, back = self.rollback_pair(campaign, st)
            target[:] = [back]
            return [
                ("rollback", back, st.mode_of(back), RELEASED),
                ("rollback", out, RELEASED, ""),
            ]

        self._apply(campaign, "rollback", change, actor, reason)
        return target[0]

    def undeploy(
        self,
        version: str,
        *,
        actor: str,
        reason: str = "",
        action: str = "undeploy",
        missing_ok: bool = True,
    ) -> str:
        """Take a shadow or canary version out of deployment; returns the mode it left
        (nothing to do, and "", if it is not deployed; Conflict instead with ``missing_ok``
        False). Conflict if it is the released version. ``action`` names why in the history:
        ``undeploy`` (a person's choice), ``rollback`` (a canary judged worse or broken) or
        ``retire`` (a shadow judged worse, too thin to judge, or replaced by a newer one)."""
        if action not in OUT_ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(OUT_ACTIONS)}, not {action!r}")
        campaign = self.registry.get(version).campaign

        def change(st: DeploymentState) -> list[Move]:
            mode = st.mode_of(version)
            if mode == RELEASED:
                raise Conflict(f"{version} is released; release another version or roll back")
            if not mode and not missing_ok:
                raise Conflict(f"{version} is not deployed; nothing to undeploy")
            left[:] = [mode]
            return [(action, version, mode, "")] if mode else []

        left: list[str] = []
        self._apply(campaign, action, change, actor, reason)
        return left[0] if left else ""

    def _apply(
        self,
        campaign: str,
        action: str,
        change: Callable[[DeploymentState], list[Move]],
        actor: str,
        reason: str,
        share: float = 0.0,
    ) -> None:
        """Compute moves from the current state and swap them in, retrying if it changed;
        announce ``action`` when something moved."""
        for _ in range(20):
            st = self.state(campaign)
            moves = change(st)
            if not moves:
                return
            now = self.clock.now()
            modes = {d.version: d for d in self.backend.deployments(campaign)}
            for _action, version, _src, dst in moves:
                if dst:
                    since = (
                        modes[version].since
                        if version in modes and modes[version].mode == dst
                        else now
                    )
                    modes[version] = DeploymentRecord(
                        campaign, version, dst, since, share if dst == CANARY else 0.0
                    )
                else:
                    modes.pop(version, None)
            transitions = [
                TransitionRecord(now, campaign, action, version, src, dst, reason, actor)
                for action, version, src, dst in moves
            ]
            if self.backend.replace_deployments(
                campaign, st.generation, list(modes.values()), transitions
            ):
                if self.on_change is not None:
                    self.on_change(campaign, action)
                return
        raise Conflict("the deployment state kept changing underneath; try again")

    # -- history -------------------------------------------------------------------------
    def history(self, campaign: str) -> list[TransitionRecord]:
        """Every recorded transition of the campaign, oldest first."""
        return self.backend.transitions(campaign)

    def live_at(self, campaign: str, ts: float) -> str | None:
        """The version released at time ``ts`` (None before the first release)."""
        live = None
        for t in self.backend.transitions(campaign):
            if t.ts > ts:
                break
            if t.to_mode == RELEASED:
                live = t.version
            elif t.from_mode == RELEASED and live == t.version:
                live = None
        return live


def transition_doc(t: TransitionRecord) -> dict[str, str]:
    """A transition as the admin API and ``history --json`` show it (one shape)."""
    return {
        "ts": format_ts(t.ts),
        "action": t.action,
        "version": t.version,
        "from": t.from_mode,
        "to": t.to_mode,
        "actor": t.actor,
        "reason": t.reason,
    }


def release_stack(transitions: Sequence[TransitionRecord]) -> list[str]:
    """The release history replayed from transitions (oldest first): a release pushes, a
    rollback pops; the last entry is the current release."""
    stack: list[str] = []
    for t in transitions:
        if t.to_mode != RELEASED:
            continue
        if t.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(t.version)
    return stack
