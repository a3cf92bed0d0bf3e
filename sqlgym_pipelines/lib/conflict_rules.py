"""The conflict rules of seed 003, stated once, and a plain-Python reference of Task 02.

The SQL in `lib/sql/conflicts_*.sql` implements these rules set-based; this module is the
specification the tests hold it to, on random data, value for value.

A *visit* is one row of the source `visits` table. A *pair* (VisitID, ConVisitID) is an
ordered pair of two different visits with the same caregiver SSN on the same VisitDate (a
NULL SSN pairs with nothing). Both orders of a pair are rows; every flag is symmetric.

Intervals are half-open, [start, end), timestamps without time zone. Two intervals
*overlap* when the later start is before the earlier end:
``max(start1, start2) < min(end1, end2)``, so touching intervals (one ends at 10:00, the
other starts at 10:00) do not overlap, and an empty or inverted interval overlaps nothing.
An interval with a NULL bound overlaps nothing.

Per pair (v = VisitID's visit, c = ConVisitID's visit):

- ``SchOverAnotherSchTimeFlag`` 'Y' when v's scheduled interval overlaps c's.
- ``VisitTimeOverAnotherVisitTimeFlag`` 'Y' when v's actual (EVV) interval overlaps c's.
- ``SchTimeOverVisitTimeFlag`` 'Y' when v's scheduled interval overlaps c's actual one, or
  v's actual interval overlaps c's scheduled one.
- ``DistanceFlag`` 'Y' when the two *effective* intervals (the actual one when both EVV
  times are recorded, else the scheduled one) do not overlap, but the gap between the
  earlier end and the later start is shorter than the travel time between the two
  patients: ``gap_seconds / 60 < ETATravelMinutes``. 'N' when a location is missing.
- ``DistanceMiles``: great-circle (haversine) distance between the patients, earth
  diameter 7917.6 miles, double precision; NULL when a coordinate is missing.
- ``ETATravelMinutes`` = ``DistanceMiles / mph * 60``, mph the configured average speed.
- ``MinuteDiffBetweenSch``: minutes from the earlier scheduled end to the later scheduled
  start (negative when the schedules overlap), rounded to 0.01 (half away from zero).
- ``SchOverlapMinutes`` / ``VisitOverlapMinutes``: minutes the scheduled / actual
  intervals share (0 when apart), rounded to 0.01; NULL when a bound is missing.

A pair is *flagged* when any of the four flags is 'Y'. Task 02, for a set of
(VisitDate, SSN) keys, at run time T:

- a flagged pair that has no row yet is inserted: ``StatusFlag`` 'new', CreatedDate =
  UpdatedDate = T;
- a pair that has a row gets every computed column; its ``StatusFlag`` becomes 'resolved'
  when it is no longer flagged, 'conflicting' when it is flagged and a computed column
  changed, and stays as it was when nothing changed (so re-running changes nothing but
  UpdatedDate); UpdatedDate = T;
- a row of the keys whose pair no longer exists (a visit was removed, moved to another day
  or another caregiver) keeps its last values with every flag 'N': 'resolved', UpdatedDate = T;
- pairs that are not flagged and have no row are not stored.

The primary key is (VisitDate, SSN, VisitID, ConVisitID): it leads with the chunk key, so
chunks of different keys never touch the same rows or index entries.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

EARTH_DIAMETER_MILES = 7917.6
FLAGS = (
    "SchOverAnotherSchTimeFlag",
    "VisitTimeOverAnotherVisitTimeFlag",
    "SchTimeOverVisitTimeFlag",
    "DistanceFlag",
)
# The source columns Task 01 copies (Snowflake names compare case-insensitively).
VISIT_COLUMNS = (
    "VisitID",
    "ProviderID",
    "PatientID",
    "SSN",
    "VisitDate",
    "SchStartTime",
    "SchEndTime",
    "VisitStartTime",
    "VisitEndTime",
    "PatientLatitude",
    "PatientLongitude",
    "ProviderName",
    "PatientName",
    "ServiceCode",
)
# The columns Task 02 computes for a pair, in table order after the key.
COMPUTED = (
    "ProviderID",
    "ConProviderID",
    "PatientID",
    "ConPatientID",
    "ProviderName",
    "ConProviderName",
    "SchStartTime",
    "SchEndTime",
    "ConSchStartTime",
    "ConSchEndTime",
    "VisitStartTime",
    "VisitEndTime",
    "ConVisitStartTime",
    "ConVisitEndTime",
    *FLAGS,
    "DistanceMiles",
    "ETATravelMinutes",
    "MinuteDiffBetweenSch",
    "SchOverlapMinutes",
    "VisitOverlapMinutes",
)
KEY = ("VisitDate", "SSN", "VisitID", "ConVisitID")
COLUMNS = (*KEY, *COMPUTED, "StatusFlag", "UpdateFlag", "CreatedDate", "UpdatedDate")

Interval = tuple[dt.datetime | None, dt.datetime | None]


@dataclass(frozen=True)
class Visit:
    VisitID: int
    SSN: str | None
    VisitDate: dt.date
    SchStartTime: dt.datetime | None
    SchEndTime: dt.datetime | None
    VisitStartTime: dt.datetime | None = None
    VisitEndTime: dt.datetime | None = None
    PatientLatitude: float | None = None
    PatientLongitude: float | None = None
    ProviderID: int | None = None
    PatientID: int | None = None
    ProviderName: str | None = None
    PatientName: str | None = None
    ServiceCode: str | None = None

    @property
    def scheduled(self) -> Interval:
        return (self.SchStartTime, self.SchEndTime)

    @property
    def actual(self) -> Interval:
        return (self.VisitStartTime, self.VisitEndTime)

    @property
    def effective(self) -> Interval:
        if self.VisitStartTime is not None and self.VisitEndTime is not None:
            return self.actual
        return self.scheduled


def _complete(*intervals: Interval) -> bool:
    return all(bound is not None for interval in intervals for bound in interval)


def overlaps(a: Interval, b: Interval) -> bool:
    """Half-open intervals share some time; False when a bound is missing."""
    return _complete(a, b) and max(a[0], b[0]) < min(a[1], b[1])


def minutes(delta: dt.timedelta) -> Decimal:
    """A duration in minutes rounded to 0.01, half away from zero (Postgres round(numeric, 2))."""
    micros = Decimal(delta // dt.timedelta(microseconds=1))
    return (micros / Decimal(60_000_000)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def overlap_minutes(a: Interval, b: Interval) -> Decimal | None:
    if not _complete(a, b):
        return None
    return minutes(max(dt.timedelta(0), min(a[1], b[1]) - max(a[0], b[0])))


def miles(v: Visit, c: Visit) -> float | None:
    """Haversine distance, written operation for operation as conflict_miles() in SQL."""
    coords = (v.PatientLatitude, v.PatientLongitude, c.PatientLatitude, c.PatientLongitude)
    if any(x is None for x in coords):
        return None
    lat1, lon1, lat2, lon2 = coords
    half_dlat = (lat2 - lat1) * math.pi / 180 / 2
    half_dlon = (lon2 - lon1) * math.pi / 180 / 2
    a = math.sin(half_dlat) * math.sin(half_dlat) + math.cos(lat1 * math.pi / 180) * math.cos(
        lat2 * math.pi / 180
    ) * math.sin(half_dlon) * math.sin(half_dlon)
    return EARTH_DIAMETER_MILES * math.asin(min(1.0, math.sqrt(a)))


def pair_values(v: Visit, c: Visit, mph: float) -> dict:
    """The computed columns of the pair (v, c)."""
    distance = miles(v, c)
    eta = None if distance is None else distance / mph * 60
    ev, ec = v.effective, c.effective
    distance_flag = (
        eta is not None
        and _complete(ev, ec)
        and not overlaps(ev, ec)
        and (max(ev[0], ec[0]) - min(ev[1], ec[1])).total_seconds() / 60 < eta
    )
    sch_gap = None
    if _complete(v.scheduled, c.scheduled):
        sch_gap = minutes(max(v.SchStartTime, c.SchStartTime) - min(v.SchEndTime, c.SchEndTime))
    flags = {
        "SchOverAnotherSchTimeFlag": overlaps(v.scheduled, c.scheduled),
        "VisitTimeOverAnotherVisitTimeFlag": overlaps(v.actual, c.actual),
        "SchTimeOverVisitTimeFlag": overlaps(v.scheduled, c.actual)
        or overlaps(v.actual, c.scheduled),
        "DistanceFlag": distance_flag,
    }
    return {
        "ProviderID": v.ProviderID,
        "ConProviderID": c.ProviderID,
        "PatientID": v.PatientID,
        "ConPatientID": c.PatientID,
        "ProviderName": v.ProviderName,
        "ConProviderName": c.ProviderName,
        "SchStartTime": v.SchStartTime,
        "SchEndTime": v.SchEndTime,
        "ConSchStartTime": c.SchStartTime,
        "ConSchEndTime": c.SchEndTime,
        "VisitStartTime": v.VisitStartTime,
        "VisitEndTime": v.VisitEndTime,
        "ConVisitStartTime": c.VisitStartTime,
        "ConVisitEndTime": c.VisitEndTime,
        **{name: "Y" if flag else "N" for name, flag in flags.items()},
        "DistanceMiles": distance,
        "ETATravelMinutes": eta,
        "MinuteDiffBetweenSch": sch_gap,
        "SchOverlapMinutes": overlap_minutes(v.scheduled, c.scheduled),
        "VisitOverlapMinutes": overlap_minutes(v.actual, c.actual),
    }


def current_pairs(visits: Iterable[Visit], mph: float) -> dict[tuple, dict]:
    """Every ordered pair of the visits, keyed like the table, with its computed columns."""
    groups: dict[tuple, list[Visit]] = {}
    for visit in visits:
        if visit.SSN is not None:
            groups.setdefault((visit.VisitDate, visit.SSN), []).append(visit)
    pairs = {}
    for (day, ssn), group in groups.items():
        for v in group:
            for c in group:
                if v.VisitID != c.VisitID:
                    pairs[(day, ssn, v.VisitID, c.VisitID)] = pair_values(v, c, mph)
    return pairs


def flagged(values: Mapping) -> bool:
    return any(values[name] == "Y" for name in FLAGS)


def task02(
    table: Mapping[tuple, dict],
    visits: Iterable[Visit],
    keys: set[tuple[dt.date, str]],
    run_ts: dt.datetime,
    mph: float,
) -> dict[tuple, dict]:
    """The table after Task 02 over `keys`, from the table before (both keyed by KEY)."""
    pairs = {
        key: values
        for key, values in current_pairs(visits, mph).items()
        if (key[0], key[1]) in keys
    }
    result = {key: dict(row) for key, row in table.items()}
    for key, row in result.items():
        if (key[0], key[1]) not in keys:
            continue
        values = pairs.get(key)
        if values is None:  # the pair is gone: resolved, last values kept
            row.update({name: "N" for name in FLAGS}, StatusFlag="resolved")
        else:
            changed = any(row[name] != values[name] for name in COMPUTED)
            if not flagged(values):
                row["StatusFlag"] = "resolved"
            elif changed:
                row["StatusFlag"] = "conflicting"
            row.update(values)
        row.update(UpdateFlag=None, UpdatedDate=run_ts)
    for key, values in pairs.items():
        if key not in result and flagged(values):
            result[key] = {
                **dict(zip(KEY, key, strict=True)),
                **values,
                "StatusFlag": "new",
                "UpdateFlag": None,
                "CreatedDate": run_ts,
                "UpdatedDate": run_ts,
            }
    return result
