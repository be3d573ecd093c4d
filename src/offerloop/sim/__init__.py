"""The game simulator: a world with a known optimum, and a driver that plays it."""

from offerloop.sim._remote import Backtest, ServiceClock
from offerloop.sim._runner import DayStats, GameSimulation
from offerloop.sim._world import SEGMENTS, Player, Segment, TasteChange, World, policy_value

__all__ = [
    "SEGMENTS",
    "Backtest",
    "DayStats",
    "GameSimulation",
    "Player",
    "Segment",
    "ServiceClock",
    "TasteChange",
    "World",
    "policy_value",
]
