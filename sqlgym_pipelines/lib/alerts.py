"""Alerts on pipeline runs (the seed's CloudWatch alarms): when to alert, and delivery."""

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import requests

from sqlgym_pipelines.lib.errors import ConfigError

WEBHOOK_TIMEOUT_S = 10

AlertKind = Literal["errors", "duration"]


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    job: str
    message: str
    details: dict = field(default_factory=dict)
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def payload(self) -> dict:
        # "text" too, so a Slack- or Mattermost-style incoming webhook shows the message as is.
        return {
            "kind": self.kind,
            "job": self.job,
            "message": self.message,
            "text": self.message,
            "details": self.details,
            "at": self.at.isoformat(),
        }


def deliver(alert: Alert, webhook_url: str | None, logger: logging.Logger) -> bool:
    """Log the alert and POST it to the webhook if one is set. True if the webhook took it.

    Never raises: a webhook that is down must not fail the sensor (and hide the next alert)."""
    logger.warning(f"ALERT [{alert.kind}] {alert.message}")
    if not webhook_url:
        return False
    try:
        body = json.dumps(alert.payload(), default=str)
        response = requests.post(
            webhook_url,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=WEBHOOK_TIMEOUT_S,
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        logger.error(f"alert webhook delivery failed ({type(exc).__name__}): {exc}")
        return False
    return True


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    error_threshold: int = 5
    error_window: dt.timedelta = dt.timedelta(minutes=10)
    duration: dt.timedelta = dt.timedelta(minutes=10)

    @property
    def cooldown(self) -> dt.timedelta:
        """After an error alert, the same job alerts again only once a whole window has passed."""
        return self.error_window

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "AlertSettings":
        minutes = dt.timedelta(minutes=1)
        return cls(
            webhook_url=env.get("SQLGYM_ALERT_WEBHOOK_URL", "").strip() or None,
            error_threshold=int(_number(env, "SQLGYM_ALERT_ERROR_THRESHOLD", 5, whole=True)),
            error_window=minutes * _number(env, "SQLGYM_ALERT_ERROR_WINDOW_MINUTES", 10),
            duration=minutes * _number(env, "SQLGYM_ALERT_DURATION_MINUTES", 10),
        )


def _number(env: Mapping[str, str], name: str, default: float, whole: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name}={raw!r}: expected {kind} > 0 (default {default:g})")
    return value


def error_burst(
    failure_times: Iterable[dt.datetime],
    now: dt.datetime,
    threshold: int = 5,
    window: dt.timedelta = dt.timedelta(minutes=10),
) -> bool:
    """At least `threshold` failures in the window ending at `now` (both ends included)."""
    return len(in_window(failure_times, now, window)) >= threshold


def in_window(
    times: Iterable[dt.datetime], now: dt.datetime, window: dt.timedelta
) -> list[dt.datetime]:
    return [t for t in times if now - window <= t <= now]


def too_long(
    started: dt.datetime,
    ended_or_now: dt.datetime,
    threshold: dt.timedelta = dt.timedelta(minutes=10),
) -> bool:
    return ended_or_now - started > threshold


def cooling_down(
    last_alert_at: dt.datetime | None, now: dt.datetime, cooldown: dt.timedelta
) -> bool:
    """True while a previous alert is recent enough that this one would repeat it."""
    return last_alert_at is not None and now - last_alert_at < cooldown


@dataclass(frozen=True)
class RunSpan:
    run_id: str
    job: str
    status: str
    started: dt.datetime
    ended: dt.datetime | None  # None while the run is going on


def overlong(
    spans: Iterable[RunSpan],
    now: dt.datetime,
    threshold: dt.timedelta,
    already_alerted: Iterable[str] = (),
) -> list[RunSpan]:
    """The runs that ran (or run) longer than the threshold and were not alerted yet."""
    seen = set(already_alerted)
    return [
        s for s in spans if s.run_id not in seen and too_long(s.started, s.ended or now, threshold)
    ]


@dataclass(frozen=True)
class DurationCursor:
    """What the duration check remembers between ticks: when it last looked, and which runs
    it alerted on. Only ids of runs it may still see are kept, so the cursor stays small."""

    checked_at: dt.datetime | None = None
    alerted: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str | None) -> "DurationCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        checked = data.get("checked_at")
        return cls(
            checked_at=dt.datetime.fromisoformat(checked) if checked else None,
            alerted=frozenset(data.get("alerted", ())),
        )

    def dump(self) -> str:
        checked = self.checked_at.isoformat() if self.checked_at else None
        return json.dumps({"checked_at": checked, "alerted": sorted(self.alerted)})

    def advance(
        self, now: dt.datetime, visible_run_ids: Iterable[str], new_alerts: Iterable[str]
    ) -> "DurationCursor":
        """Next cursor: ids not visible any more (finished before the lookback) are dropped."""
        keep = (self.alerted | frozenset(new_alerts)) & frozenset(visible_run_ids)
        return DurationCursor(checked_at=now, alerted=keep)
