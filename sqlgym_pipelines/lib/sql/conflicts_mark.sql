-- Task 02, phase 1 (the seed's mark): lock every existing row of the keys with UpdateFlag = 1.
UPDATE {schema}.conflictvisitmaps t
SET "UpdateFlag" = 1
FROM _conflict_keys k
WHERE t."VisitDate" = k."VisitDate" AND t."SSN" = k."SSN";
