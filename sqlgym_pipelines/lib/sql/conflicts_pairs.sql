-- Task 02, step 2: every ordered pair of the keys' visits with its computed columns, into
-- _conflict_pairs (dropped at commit). Rules: lib/conflict_rules.py. Params: mph.
CREATE TEMP TABLE _conflict_pairs ON COMMIT DROP AS
WITH v AS (
    SELECT s.*,
        CASE WHEN s."VisitStartTime" IS NOT NULL AND s."VisitEndTime" IS NOT NULL
            THEN s."VisitStartTime" ELSE s."SchStartTime" END AS eff_start,
        CASE WHEN s."VisitStartTime" IS NOT NULL AND s."VisitEndTime" IS NOT NULL
            THEN s."VisitEndTime" ELSE s."SchEndTime" END AS eff_end
    FROM {schema}.visits s
    JOIN _conflict_keys k ON k."VisitDate" = s."VisitDate" AND k."SSN" = s."SSN"
)
SELECT
    a."VisitDate", a."SSN", a."VisitID", b."VisitID" AS "ConVisitID",
    a."ProviderID", b."ProviderID" AS "ConProviderID",
    a."PatientID", b."PatientID" AS "ConPatientID",
    a."ProviderName", b."ProviderName" AS "ConProviderName",
    a."SchStartTime", a."SchEndTime",
    b."SchStartTime" AS "ConSchStartTime", b."SchEndTime" AS "ConSchEndTime",
    a."VisitStartTime", a."VisitEndTime",
    b."VisitStartTime" AS "ConVisitStartTime", b."VisitEndTime" AS "ConVisitEndTime",
    CASE WHEN f.sch_sch THEN 'Y' ELSE 'N' END AS "SchOverAnotherSchTimeFlag",
    CASE WHEN f.act_act THEN 'Y' ELSE 'N' END AS "VisitTimeOverAnotherVisitTimeFlag",
    CASE WHEN f.sch_act THEN 'Y' ELSE 'N' END AS "SchTimeOverVisitTimeFlag",
    CASE WHEN coalesce(NOT f.eff_eff AND f.gap_seconds / 60 < d.eta, false)
        THEN 'Y' ELSE 'N' END AS "DistanceFlag",
    d.miles AS "DistanceMiles",
    d.eta AS "ETATravelMinutes",
    CASE WHEN a."SchStartTime" IS NOT NULL AND a."SchEndTime" IS NOT NULL
        AND b."SchStartTime" IS NOT NULL AND b."SchEndTime" IS NOT NULL
        THEN {schema}.conflict_minutes(greatest(a."SchStartTime", b."SchStartTime")
            - least(a."SchEndTime", b."SchEndTime"))
    END AS "MinuteDiffBetweenSch",
    {schema}.conflict_overlap_minutes(
        a."SchStartTime", a."SchEndTime", b."SchStartTime", b."SchEndTime") AS "SchOverlapMinutes",
    {schema}.conflict_overlap_minutes(
        a."VisitStartTime", a."VisitEndTime", b."VisitStartTime", b."VisitEndTime"
    ) AS "VisitOverlapMinutes",
    f.sch_sch OR f.act_act OR f.sch_act
        OR coalesce(NOT f.eff_eff AND f.gap_seconds / 60 < d.eta, false) AS flagged
FROM v a
JOIN v b ON b."VisitDate" = a."VisitDate" AND b."SSN" = a."SSN" AND b."VisitID" <> a."VisitID"
CROSS JOIN LATERAL (
    SELECT
        {schema}.conflict_overlaps(a."SchStartTime", a."SchEndTime", b."SchStartTime", b."SchEndTime") AS sch_sch,
        {schema}.conflict_overlaps(a."VisitStartTime", a."VisitEndTime", b."VisitStartTime", b."VisitEndTime") AS act_act,
        {schema}.conflict_overlaps(a."SchStartTime", a."SchEndTime", b."VisitStartTime", b."VisitEndTime")
            OR {schema}.conflict_overlaps(a."VisitStartTime", a."VisitEndTime", b."SchStartTime", b."SchEndTime") AS sch_act,
        {schema}.conflict_overlaps(a.eff_start, a.eff_end, b.eff_start, b.eff_end) AS eff_eff,
        CASE WHEN a.eff_start IS NOT NULL AND a.eff_end IS NOT NULL
            AND b.eff_start IS NOT NULL AND b.eff_end IS NOT NULL
            THEN extract(epoch FROM greatest(a.eff_start, b.eff_start) - least(a.eff_end, b.eff_end))::double precision
        END AS gap_seconds
) f
CROSS JOIN LATERAL (
    SELECT m.miles, m.miles / %(mph)s::double precision * 60 AS eta
    FROM (SELECT {schema}.conflict_miles(a."PatientLatitude", a."PatientLongitude",
                                         b."PatientLatitude", b."PatientLongitude") AS miles) m
) d;
