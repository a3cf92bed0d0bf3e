-- Task 02: rows still marked after the update have no pair any more (a visit was removed or
-- moved): every flag 'N', resolved, released. Params: run_ts.
UPDATE {schema}.conflictvisitmaps t
SET "SchOverAnotherSchTimeFlag" = 'N', "VisitTimeOverAnotherVisitTimeFlag" = 'N',
    "SchTimeOverVisitTimeFlag" = 'N', "DistanceFlag" = 'N',
    "StatusFlag" = 'resolved', "UpdateFlag" = NULL, "UpdatedDate" = %(run_ts)s
FROM _conflict_keys k
WHERE t."UpdateFlag" = 1 AND t."VisitDate" = k."VisitDate" AND t."SSN" = k."SSN";
