-- Task 02: flagged pairs without a row become 'new' rows. Params: run_ts, existing (false:
-- the keys have no rows yet, so the lookup is skipped).
INSERT INTO {schema}.conflictvisitmaps (
    "VisitDate", "SSN", "VisitID", "ConVisitID", "ProviderID", "ConProviderID", "PatientID",
    "ConPatientID", "ProviderName", "ConProviderName", "SchStartTime", "SchEndTime",
    "ConSchStartTime", "ConSchEndTime", "VisitStartTime", "VisitEndTime", "ConVisitStartTime",
    "ConVisitEndTime", "SchOverAnotherSchTimeFlag", "VisitTimeOverAnotherVisitTimeFlag",
    "SchTimeOverVisitTimeFlag", "DistanceFlag", "DistanceMiles", "ETATravelMinutes",
    "MinuteDiffBetweenSch", "SchOverlapMinutes", "VisitOverlapMinutes", "StatusFlag",
    "UpdateFlag", "CreatedDate", "UpdatedDate"
)
SELECT
    p."VisitDate", p."SSN", p."VisitID", p."ConVisitID", p."ProviderID", p."ConProviderID",
    p."PatientID", p."ConPatientID", p."ProviderName", p."ConProviderName", p."SchStartTime",
    p."SchEndTime", p."ConSchStartTime", p."ConSchEndTime", p."VisitStartTime",
    p."VisitEndTime", p."ConVisitStartTime", p."ConVisitEndTime", p."SchOverAnotherSchTimeFlag",
    p."VisitTimeOverAnotherVisitTimeFlag", p."SchTimeOverVisitTimeFlag", p."DistanceFlag",
    p."DistanceMiles", p."ETATravelMinutes", p."MinuteDiffBetweenSch", p."SchOverlapMinutes",
    p."VisitOverlapMinutes", 'new', NULL, %(run_ts)s, %(run_ts)s
FROM _conflict_pairs p
WHERE p.flagged
  AND (NOT %(existing)s OR NOT EXISTS (
      SELECT 1 FROM {schema}.conflictvisitmaps t
      WHERE t."VisitDate" = p."VisitDate" AND t."SSN" = p."SSN"
        AND t."VisitID" = p."VisitID" AND t."ConVisitID" = p."ConVisitID"
  ));
