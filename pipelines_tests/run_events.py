"""What a Dagster run did, read from its events: the checks it evaluated, the steps that
succeeded or failed, and why they failed."""

from typing import Any


def check_evaluations(result) -> dict[str, Any]:
    """{check name: its AssetCheckEvaluation} of the run."""
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def checks_passed(result) -> dict[str, bool]:
    return {name: ev.passed for name, ev in check_evaluations(result).items()}


def steps(result, event_type: str, containing: str = "") -> set[str]:
    """Keys of the steps with an event of that type (STEP_SUCCESS, STEP_FAILURE...)."""
    return {
        e.step_key
        for e in result.all_events
        if e.event_type_value == event_type and containing in (e.step_key or "")
    }


def failure_messages(result) -> list[str]:
    return [
        e.event_specific_data.error.message
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
