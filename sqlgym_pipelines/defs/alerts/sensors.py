"""The seed's CloudWatch alarms on the forecast sync, as sensors: 5 failed runs in 10 minutes,
and a run longer than 10 minutes, each -> a notification (log + optional webhook)."""

import datetime as dt
import os
from collections.abc import Sequence

import dagster as dg

from sqlgym_pipelines.lib import alerts

FORECAST_JOBS = ("forecast_sync_job",)

# The failure sensor's cursor belongs to Dagster (it raises if a run status sensor sets one), so
# the last error alert of a job is remembered as tags on the run that raised it.
ALERT_TAG = "sqlgym/alert"
ALERT_AT_TAG = "sqlgym/alert_at"

DURATION_INTERVAL_S = 60
FIRST_LOOKBACK = dt.timedelta(hours=1)  # the duration sensor's first tick looks this far back
OVERLAP = dt.timedelta(minutes=5)  # runs finishing while the previous tick ran are not missed

FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


def _default_status() -> dg.DefaultSensorStatus:
    running = os.environ.get("SQLGYM_SENSORS_DEFAULT_STATUS", "stopped").lower() == "running"
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _last_error(context: dg.RunFailureSensorContext) -> str:
    steps = context.get_step_failure_events()
    error = steps[-1].event_specific_data.error if steps else None
    if error is None:
        error = getattr(context.failure_event.event_specific_data, "error", None)
    while error is not None and error.cause is not None:  # the op's own exception, not Dagster's
        error = error.cause
    text = error.message.strip() if error else (context.failure_event.message or "unknown")
    prefix = f"{steps[-1].step_key}: " if steps else ""
    return (prefix + text)[:500]


def _last_error_alert(
    instance: dg.DagsterInstance, job: str, since: dt.datetime
) -> dt.datetime | None:
    tagged = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job, tags={ALERT_TAG: "errors"}, updated_after=since)
    )
    stamps = [r.dagster_run.tags.get(ALERT_AT_TAG) for r in tagged]
    return max((dt.datetime.fromisoformat(s) for s in stamps if s), default=None)


def build_failure_sensor(name: str, job_names: Sequence[str]) -> dg.SensorDefinition:
    """Errors alert for the named jobs. They are matched by name inside the sensor, so the jobs
    may live in any module of this code location, or not be loaded at all."""
    watched = frozenset(job_names)

    # No monitored_jobs: a JobDefinition is not importable here (each defs module builds its
    # objects inside its @dg.definitions function), and a JobSelector needs the code location's
    # name, which differs between workspace.yaml and `dagster dev -m`.
    @dg.run_failure_sensor(
        name=name,
        default_status=_default_status(),
        description=f"Alert when {', '.join(sorted(watched))} fails SQLGYM_ALERT_ERROR_THRESHOLD"
        " times (5) within SQLGYM_ALERT_ERROR_WINDOW_MINUTES (10).",
    )
    def _sensor(context: dg.RunFailureSensorContext) -> None:
        # Returning None (not a SkipReason) for other jobs: a returned value ends Dagster's
        # tick after this one run, which would delay a watched failure behind unrelated ones.
        run = context.dagster_run
        if run.job_name not in watched:
            return
        settings = alerts.AlertSettings.from_env()
        instance = context.instance
        last_error = _last_error(context)
        context.log.info(f"{run.job_name} run {run.run_id} failed: {last_error}")

        # The window ends at this failure, not at the tick: a backlog (daemon down) still
        # counts the failures as they happened.
        record = instance.get_run_record_by_id(run.run_id)
        now = _utc(record.end_time) if record and record.end_time else dt.datetime.now(dt.UTC)
        failed = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=run.job_name,
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=now - settings.error_window,
            )
        )
        times = [_utc(r.end_time) for r in failed if r.end_time is not None]
        if not alerts.error_burst(times, now, settings.error_threshold, settings.error_window):
            return
        last_alert = _last_error_alert(instance, run.job_name, now - settings.cooldown)
        if alerts.cooling_down(last_alert, now, settings.cooldown):
            context.log.info(f"{run.job_name}: still failing, already alerted at {last_alert}")
            return

        count = len(alerts.in_window(times, now, settings.error_window))
        minutes = settings.error_window.total_seconds() / 60
        alert = alerts.Alert(
            kind="errors",
            job=run.job_name,
            message=f"{run.job_name}: {count} failed runs in the last {minutes:g} minutes"
            f" (threshold {settings.error_threshold}); last error: {last_error}",
            details={
                "count": count,
                "threshold": settings.error_threshold,
                "window_minutes": minutes,
                "run_id": run.run_id,
                "last_error": last_error,
            },
            at=now,
        )
        instance.add_run_tags(run.run_id, {ALERT_TAG: "errors", ALERT_AT_TAG: now.isoformat()})
        alerts.deliver(alert, settings.webhook_url, context.log)

    return _sensor


def _spans(instance: dg.DagsterInstance, job: str, since: dt.datetime) -> list[alerts.RunSpan]:
    running = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.STARTED])
    )
    finished = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job, statuses=FINISHED, updated_after=since)
    )
    spans = []
    for r in [*running, *finished]:
        ended = _utc(r.end_time) if r.end_time else None
        # A tag added to an old run bumps its update time: only its end time counts.
        if r.start_time is None or (r.dagster_run.is_finished and (ended is None or ended < since)):
            continue
        status = r.dagster_run.status.value
        spans.append(alerts.RunSpan(r.dagster_run.run_id, job, status, _utc(r.start_time), ended))
    return spans


def build_duration_sensor(name: str, job_names: Sequence[str]) -> dg.SensorDefinition:
    """Duration alert, once per run of the named jobs that runs (or ran) too long."""
    watched = sorted(set(job_names))

    @dg.sensor(
        name=name,
        minimum_interval_seconds=DURATION_INTERVAL_S,
        default_status=_default_status(),
        description=f"Alert when a run of {', '.join(watched)} takes longer than"
        " SQLGYM_ALERT_DURATION_MINUTES (10).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        settings = alerts.AlertSettings.from_env()
        now = dt.datetime.now(dt.UTC)
        cursor = alerts.DurationCursor.parse(context.cursor)
        since = (cursor.checked_at or now - FIRST_LOOKBACK) - OVERLAP
        spans = [s for job in watched for s in _spans(context.instance, job, since)]
        due = alerts.overlong(spans, now, settings.duration, cursor.alerted)
        limit = settings.duration.total_seconds() / 60
        for span in due:
            took = ((span.ended or now) - span.started).total_seconds() / 60
            verb = "has been running" if span.ended is None else f"ran ({span.status})"
            alert = alerts.Alert(
                kind="duration",
                job=span.job,
                message=f"{span.job} run {span.run_id} {verb} {took:.1f} minutes"
                f" (threshold {limit:g})",
                details={
                    "run_id": span.run_id,
                    "status": span.status,
                    "started": span.started.isoformat(),
                    "ended": span.ended.isoformat() if span.ended else None,
                    "minutes": round(took, 2),
                    "threshold_minutes": limit,
                },
                at=now,
            )
            alerts.deliver(alert, settings.webhook_url, context.log)
        visible = [s.run_id for s in spans]
        context.update_cursor(cursor.advance(now, visible, [s.run_id for s in due]).dump())
        return dg.SkipReason(
            f"{len(due)} duration alert(s); {len(spans)} recent run(s) of {', '.join(watched)}"
        )

    return _sensor


@dg.definitions
def alert_sensors() -> dg.Definitions:
    return dg.Definitions(
        sensors=[
            build_failure_sensor("forecast_sync_failure_sensor", FORECAST_JOBS),
            build_duration_sensor("forecast_sync_duration_sensor", FORECAST_JOBS),
        ]
    )
