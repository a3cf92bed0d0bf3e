-- Task 02, phase 2 (update and release): marked rows whose pair still exists get every
-- computed column; the status follows lib/conflict_rules.py. Params: run_ts.
UPDATE {schema}.conflictvisitmaps t
SET "ProviderID" = p."ProviderID", "ConProviderID" = p."ConProviderID",
    "PatientID" = p."PatientID", "ConPatientID" = p."ConPatientID",
    "ProviderName" = p."ProviderName", "ConProviderName" = p."ConProviderName",
    "SchStartTime" = p."SchStartTime", "SchEndTime" = p."SchEndTime",
    "ConSchStartTime" = p."ConSchStartTime", "ConSchEndTime" = p."ConSchEndTime",
    "VisitStartTime" = p."VisitStartTime", "VisitEndTime" = p."VisitEndTime",
    "ConVisitStartTime" = p."ConVisitStartTime", "ConVisitEndTime" = p."ConVisitEndTime",
    "SchOverAnotherSchTimeFlag" = p."SchOverAnotherSchTimeFlag",
    "VisitTimeOverAnotherVisitTimeFlag" = p."VisitTimeOverAnotherVisitTimeFlag",
    "SchTimeOverVisitTimeFlag" = p."SchTimeOverVisitTimeFlag",
    "DistanceFlag" = p."DistanceFlag",
    "DistanceMiles" = p."DistanceMiles", "ETATravelMinutes" = p."ETATravelMinutes",
    "MinuteDiffBetweenSch" = p."MinuteDiffBetweenSch",
    "SchOverlapMinutes" = p."SchOverlapMinutes", "VisitOverlapMinutes" = p."VisitOverlapMinutes",
    "StatusFlag" = CASE
        WHEN NOT p.flagged THEN 'resolved'
        WHEN (t."ProviderID", t."ConProviderID", t."PatientID", t."ConPatientID",
              t."ProviderName", t."ConProviderName", t."SchStartTime", t."SchEndTime",
              t."ConSchStartTime", t."ConSchEndTime", t."VisitStartTime", t."VisitEndTime",
              t."ConVisitStartTime", t."ConVisitEndTime", t."SchOverAnotherSchTimeFlag",
              t."VisitTimeOverAnotherVisitTimeFlag", t."SchTimeOverVisitTimeFlag",
              t."DistanceFlag", t."DistanceMiles", t."ETATravelMinutes",
              t."MinuteDiffBetweenSch", t."SchOverlapMinutes", t."VisitOverlapMinutes")
            IS DISTINCT FROM
             (p."ProviderID", p."ConProviderID", p."PatientID", p."ConPatientID",
              p."ProviderName", p."ConProviderName", p."SchStartTime", p."SchEndTime",
              p."ConSchStartTime", p."ConSchEndTime", p."VisitStartTime", p."VisitEndTime",
              p."ConVisitStartTime", p."ConVisitEndTime", p."SchOverAnotherSchTimeFlag",
              p."VisitTimeOverAnotherVisitTimeFlag", p."SchTimeOverVisitTimeFlag",
              p."DistanceFlag", p."DistanceMiles", p."ETATravelMinutes",
              p."MinuteDiffBetweenSch", p."SchOverlapMinutes", p."VisitOverlapMinutes")
            THEN 'conflicting'
        ELSE t."StatusFlag"
    END,
    "UpdateFlag" = NULL,
    "UpdatedDate" = %(run_ts)s
FROM _conflict_pairs p
WHERE t."UpdateFlag" = 1
  AND t."VisitDate" = p."VisitDate" AND t."SSN" = p."SSN"
  AND t."VisitID" = p."VisitID" AND t."ConVisitID" = p."ConVisitID";
