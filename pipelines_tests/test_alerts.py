"""Alerts on the forecast sync: the decisions, delivery to a real webhook, and both sensors
evaluated on real runs in a Dagster instance."""

import datetime as dt
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from sqlgym_pipelines.defs.alerts.sensors import alert_sensors
from sqlgym_pipelines.lib import alerts
from sqlgym_pipelines.lib.errors import ConfigError

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


# --- the decisions -------------------------------------------------------------------------


def test_error_burst_at_exactly_the_threshold():
    five = [T0 - k * MIN for k in range(5)]
    assert alerts.error_burst(five, T0, threshold=5, window=10 * MIN)
    assert not alerts.error_burst(five[:4], T0, threshold=5, window=10 * MIN)


def test_error_burst_counts_only_the_window():
    four_recent = [T0 - k * MIN for k in range(4)]
    edge = T0 - 10 * MIN  # "in 10 minutes" includes a failure exactly 10 minutes ago
    assert alerts.error_burst([*four_recent, edge], T0)
    assert not alerts.error_burst([*four_recent, edge - dt.timedelta(seconds=1)], T0)
    assert not alerts.error_burst([*four_recent, T0 + MIN], T0)  # after `now`: not yet


def test_cooldown():
    assert not alerts.cooling_down(None, T0, 10 * MIN)
    assert alerts.cooling_down(T0 - 9 * MIN, T0, 10 * MIN)
    assert not alerts.cooling_down(T0 - 10 * MIN, T0, 10 * MIN)


def test_too_long_is_strictly_longer():
    assert not alerts.too_long(T0, T0 + 10 * MIN)
    assert alerts.too_long(T0, T0 + 10 * MIN + dt.timedelta(seconds=1))
    assert alerts.too_long(T0, T0 + 3 * MIN, threshold=2 * MIN)


def test_overlong_once_per_run_and_cursor_forgets_runs_out_of_view():
    spans = [
        alerts.RunSpan("long", "forecast_sync_job", "SUCCESS", T0, T0 + 11 * MIN),
        alerts.RunSpan("short", "forecast_sync_job", "SUCCESS", T0, T0 + 2 * MIN),
        alerts.RunSpan("going", "forecast_sync_job", "STARTED", T0, None),
    ]
    now = T0 + 12 * MIN
    due = alerts.overlong(spans, now, 10 * MIN)
    assert [s.run_id for s in due] == ["long", "going"]
    cursor = alerts.DurationCursor().advance(now, ["long", "short", "going"], ["long", "going"])
    assert alerts.overlong(spans, now, 10 * MIN, cursor.alerted) == []
    later = alerts.DurationCursor.parse(cursor.dump()).advance(now + MIN, ["going"], [])
    assert later.alerted == {"going"}
    assert later.checked_at == now + MIN


def test_settings_from_env():
    assert alerts.AlertSettings.from_env({}) == alerts.AlertSettings(None, 5, 10 * MIN, 10 * MIN)
    s = alerts.AlertSettings.from_env(
        {
            "SQLGYM_ALERT_WEBHOOK_URL": "http://hooks.example/x",
            "SQLGYM_ALERT_ERROR_THRESHOLD": "3",
            "SQLGYM_ALERT_ERROR_WINDOW_MINUTES": "30",
            "SQLGYM_ALERT_DURATION_MINUTES": "0.5",
        }
    )
    assert (s.webhook_url, s.error_threshold) == ("http://hooks.example/x", 3)
    assert (s.error_window, s.duration) == (30 * MIN, dt.timedelta(seconds=30))
    with pytest.raises(ConfigError, match="SQLGYM_ALERT_ERROR_THRESHOLD='2.5'.*whole number"):
        alerts.AlertSettings.from_env({"SQLGYM_ALERT_ERROR_THRESHOLD": "2.5"})
    with pytest.raises(ConfigError, match="SQLGYM_ALERT_DURATION_MINUTES='ten'"):
        alerts.AlertSettings.from_env({"SQLGYM_ALERT_DURATION_MINUTES": "ten"})


# --- delivery to a real webhook ------------------------------------------------------------


class Webhook:
    """A local HTTP server that records every JSON body POSTed to it."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


LOG = logging.getLogger("test_alerts")


def _alert() -> alerts.Alert:
    return alerts.Alert("errors", "forecast_sync_job", "5 failed runs", {"count": 5}, T0)


def test_deliver_posts_json_and_logs(webhook, caplog):
    with caplog.at_level(logging.WARNING, logger="test_alerts"):
        assert alerts.deliver(_alert(), webhook.url, LOG)
    assert webhook.received == [
        {
            "kind": "errors",
            "job": "forecast_sync_job",
            "message": "5 failed runs",
            "text": "5 failed runs",
            "details": {"count": 5},
            "at": "2026-11-20T12:00:00+00:00",
        }
    ]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "5 failed runs" in caplog.text


def test_deliver_without_webhook_only_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="test_alerts"):
        assert not alerts.deliver(_alert(), None, LOG)
    assert "ALERT [errors] 5 failed runs" in caplog.text


def test_deliver_to_a_dead_or_failing_webhook_logs_and_does_not_raise(webhook, dead_url, caplog):
    with caplog.at_level(logging.WARNING, logger="test_alerts"):
        assert not alerts.deliver(_alert(), dead_url, LOG)
        webhook.status = 500
        assert not alerts.deliver(_alert(), webhook.url, LOG)
    failures = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 2
    assert "ConnectionError" in failures[0]
    assert "500" in failures[1]
    assert len(webhook.received) == 1  # the 500 one was still received


# --- the sensors on real runs --------------------------------------------------------------


class Behaviour(dg.Config):
    fail: bool = False
    sleep_s: float = 0.0


@dg.op
def sync_forecast(config: Behaviour) -> None:
    time.sleep(config.sleep_s)
    if config.fail:
        raise RuntimeError("Athena query failed: table forecast_raw not found")


@dg.job(name="forecast_sync_job")
def forecast_sync_job():
    sync_forecast()


@dg.job(name="postgres_sync_job")
def other_job():
    sync_forecast()


def _run(instance, job=forecast_sync_job, **behaviour) -> dg.ExecuteInProcessResult:
    config = {"ops": {"sync_forecast": {"config": behaviour}}}
    return job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)


@pytest.fixture
def sensors(webhook, monkeypatch) -> dg.Definitions:
    monkeypatch.setenv("SQLGYM_ALERT_WEBHOOK_URL", webhook.url)
    for name in ("THRESHOLD", "WINDOW_MINUTES"):
        monkeypatch.delenv(f"SQLGYM_ALERT_ERROR_{name}", raising=False)
    return alert_sensors()


def _on_failure(defs: dg.Definitions, instance, result: dg.ExecuteInProcessResult) -> None:
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="forecast_sync_failure_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    )
    defs.resolve_sensor_def("forecast_sync_failure_sensor")(context)


def test_fifth_failure_in_ten_minutes_alerts_once(sensors, webhook):
    with dg.instance_for_test() as instance:
        _run(instance)  # a success does not count
        for _ in range(3):
            _on_failure(sensors, instance, _run(instance, other_job, fail=True))
        for _ in range(4):
            _on_failure(sensors, instance, _run(instance, fail=True))
        assert webhook.received == []  # 4 of the job, 3 of another job

        fifth = _run(instance, fail=True)
        _on_failure(sensors, instance, fifth)
        assert len(webhook.received) == 1
        alert = webhook.received[0]
        assert (alert["kind"], alert["job"]) == ("errors", "forecast_sync_job")
        assert alert["details"]["count"] == 5
        assert alert["details"]["run_id"] == fifth.run_id
        assert alert["message"].startswith(
            "forecast_sync_job: 5 failed runs in the last 10 minutes (threshold 5); last error: "
            "sync_forecast: RuntimeError: Athena query failed"
        )
        assert instance.get_run_by_id(fifth.run_id).tags["sqlgym/alert"] == "errors"

        # Still failing: the same burst does not alert on every further failure.
        _on_failure(sensors, instance, _run(instance, fail=True))
        assert len(webhook.received) == 1


def test_threshold_and_window_come_from_env(sensors, webhook, monkeypatch):
    monkeypatch.setenv("SQLGYM_ALERT_ERROR_THRESHOLD", "2")
    with dg.instance_for_test() as instance:
        _on_failure(sensors, instance, _run(instance, fail=True))
        assert webhook.received == []
        _on_failure(sensors, instance, _run(instance, fail=True))
        assert [a["details"]["count"] for a in webhook.received] == [2]

    monkeypatch.setenv("SQLGYM_ALERT_ERROR_WINDOW_MINUTES", "0.005")  # 0.3 s
    with dg.instance_for_test() as instance:
        _on_failure(sensors, instance, _run(instance, fail=True))
        time.sleep(0.5)  # the first failure leaves the window
        _on_failure(sensors, instance, _run(instance, fail=True))
        assert len(webhook.received) == 1


DURATION = "forecast_sync_duration_sensor"


def _tick(defs: dg.Definitions, instance, cursor: str | None) -> str:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    defs.resolve_sensor_def(DURATION)(context)
    return context.cursor


def test_duration_alert_once_per_finished_run(sensors, webhook, monkeypatch):
    monkeypatch.setenv("SQLGYM_ALERT_DURATION_MINUTES", "0.02")  # 1.2 s
    with dg.instance_for_test() as instance:
        quick = _run(instance)
        slow = _run(instance, sleep_s=2.0)
        failed_slow = _run(instance, fail=True, sleep_s=2.0)
        _run(instance, other_job, sleep_s=2.0)

        cursor = _tick(sensors, instance, None)
        alerted = {a["details"]["run_id"]: a for a in webhook.received}
        assert set(alerted) == {slow.run_id, failed_slow.run_id}
        assert quick.run_id not in alerted
        assert alerted[slow.run_id]["kind"] == "duration"
        assert alerted[slow.run_id]["details"]["minutes"] > 0.02
        assert "ran (FAILURE)" in alerted[failed_slow.run_id]["message"]

        cursor = _tick(sensors, instance, cursor)
        cursor = _tick(sensors, instance, cursor)
        assert len(webhook.received) == 2
        assert set(json.loads(cursor)["alerted"]) == {slow.run_id, failed_slow.run_id}


def test_duration_alert_while_running_not_again_when_it_ends(sensors, webhook, monkeypatch):
    monkeypatch.setenv("SQLGYM_ALERT_DURATION_MINUTES", "0.02")  # 1.2 s
    with dg.instance_for_test() as instance:
        results = []
        worker = threading.Thread(target=lambda: results.append(_run(instance, sleep_s=3.0)))
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = instance.get_run_records(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )
            if started and time.time() - started[0].start_time > 1.5:
                break
            time.sleep(0.1)
        cursor = _tick(sensors, instance, None)
        assert worker.is_alive(), "the run ended before the sensor could see it running"
        assert len(webhook.received) == 1
        assert "has been running" in webhook.received[0]["message"]

        worker.join()
        assert results[0].success
        cursor = _tick(sensors, instance, cursor)
        assert len(webhook.received) == 1
        assert webhook.received[0]["details"]["run_id"] == results[0].run_id
