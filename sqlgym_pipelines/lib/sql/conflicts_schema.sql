-- The conflict report's tables and rule functions (seed 003), idempotent. Rules: lib/conflict_rules.py.
CREATE SCHEMA IF NOT EXISTS {schema};

-- Task 01's copy of the source visits, by VisitDate (a date is replaced as a whole).
CREATE TABLE IF NOT EXISTS {schema}.visits (
    "VisitID" bigint NOT NULL,
    "ProviderID" bigint,
    "PatientID" bigint,
    "SSN" text,
    "VisitDate" date NOT NULL,
    "SchStartTime" timestamp,
    "SchEndTime" timestamp,
    "VisitStartTime" timestamp,
    "VisitEndTime" timestamp,
    "PatientLatitude" double precision,
    "PatientLongitude" double precision,
    "ProviderName" text,
    "PatientName" text,
    "ServiceCode" text,
    "LoadedAt" timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY ("VisitDate", "VisitID")
);
CREATE INDEX IF NOT EXISTS visits_date_ssn ON {schema}.visits ("VisitDate", "SSN");

-- No index on "UpdateFlag": setting and clearing it stays a HOT update (fillfactor leaves
-- room on the page for the mark and the update of one run).
CREATE TABLE IF NOT EXISTS {schema}.conflictvisitmaps (
    "VisitDate" date NOT NULL,
    "SSN" text NOT NULL,
    "VisitID" bigint NOT NULL,
    "ConVisitID" bigint NOT NULL,
    "ProviderID" bigint,
    "ConProviderID" bigint,
    "PatientID" bigint,
    "ConPatientID" bigint,
    "ProviderName" text,
    "ConProviderName" text,
    "SchStartTime" timestamp,
    "SchEndTime" timestamp,
    "ConSchStartTime" timestamp,
    "ConSchEndTime" timestamp,
    "VisitStartTime" timestamp,
    "VisitEndTime" timestamp,
    "ConVisitStartTime" timestamp,
    "ConVisitEndTime" timestamp,
    "SchOverAnotherSchTimeFlag" char(1) NOT NULL CHECK ("SchOverAnotherSchTimeFlag" IN ('Y', 'N')),
    "VisitTimeOverAnotherVisitTimeFlag" char(1) NOT NULL
        CHECK ("VisitTimeOverAnotherVisitTimeFlag" IN ('Y', 'N')),
    "SchTimeOverVisitTimeFlag" char(1) NOT NULL CHECK ("SchTimeOverVisitTimeFlag" IN ('Y', 'N')),
    "DistanceFlag" char(1) NOT NULL CHECK ("DistanceFlag" IN ('Y', 'N')),
    "DistanceMiles" double precision,
    "ETATravelMinutes" double precision,
    "MinuteDiffBetweenSch" numeric(12, 2),
    "SchOverlapMinutes" numeric(12, 2),
    "VisitOverlapMinutes" numeric(12, 2),
    "StatusFlag" text NOT NULL CHECK ("StatusFlag" IN ('new', 'conflicting', 'resolved')),
    "UpdateFlag" smallint,
    "CreatedDate" timestamp NOT NULL,
    "UpdatedDate" timestamp,
    PRIMARY KEY ("VisitDate", "SSN", "VisitID", "ConVisitID")
) WITH (fillfactor = 45);

-- The durable chunk plan (the seed kept it in Lambda's /tmp): one row per plan, per chunk,
-- and per (VisitDate, SSN) key of a chunk.
CREATE TABLE IF NOT EXISTS {schema}.conflict_plans (
    plan_id bigserial PRIMARY KEY,
    window_start date NOT NULL,
    window_end date NOT NULL,
    run_id text,
    run_ts timestamp NOT NULL,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.conflict_chunks (
    plan_id bigint NOT NULL REFERENCES {schema}.conflict_plans ON DELETE CASCADE,
    chunk_id integer NOT NULL,
    est_rows bigint NOT NULL,
    keys integer NOT NULL,
    dates integer NOT NULL,
    ssns integer NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    attempts integer NOT NULL DEFAULT 0,
    marked bigint,
    updated bigint,
    inserted bigint,
    gone bigint,
    seconds double precision,
    finished_at timestamptz,
    PRIMARY KEY (plan_id, chunk_id)
);
CREATE TABLE IF NOT EXISTS {schema}.conflict_chunk_keys (
    plan_id bigint NOT NULL,
    chunk_id integer NOT NULL,
    "VisitDate" date NOT NULL,
    "SSN" text NOT NULL,
    PRIMARY KEY (plan_id, chunk_id, "VisitDate", "SSN"),
    FOREIGN KEY (plan_id, chunk_id) REFERENCES {schema}.conflict_chunks ON DELETE CASCADE
);

-- The rules as inlinable SQL functions; each mirrors a function of lib/conflict_rules.py.
CREATE OR REPLACE FUNCTION {schema}.conflict_overlaps(
    s1 timestamp, e1 timestamp, s2 timestamp, e2 timestamp
) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(s1 < e1 AND s1 < e2 AND s2 < e1 AND s2 < e2, false)
$$;

CREATE OR REPLACE FUNCTION {schema}.conflict_minutes(d interval)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT round(extract(epoch FROM d) / 60, 2)
$$;

CREATE OR REPLACE FUNCTION {schema}.conflict_overlap_minutes(
    s1 timestamp, e1 timestamp, s2 timestamp, e2 timestamp
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s1 IS NOT NULL AND e1 IS NOT NULL AND s2 IS NOT NULL AND e2 IS NOT NULL
        THEN round(greatest(0, extract(epoch FROM least(e1, e2) - greatest(s1, s2))) / 60, 2)
    END
$$;

CREATE OR REPLACE FUNCTION {schema}.conflict_miles(
    lat1 double precision, lon1 double precision, lat2 double precision, lon2 double precision
) RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- least() skips NULLs: without the CASE a missing coordinate would read as asin(1)
    SELECT CASE WHEN lat1 IS NOT NULL AND lon1 IS NOT NULL AND lat2 IS NOT NULL AND lon2 IS NOT NULL
    THEN 7917.6::double precision * asin(least(1::double precision, sqrt(
        sin((lat2 - lat1) * pi() / 180 / 2) * sin((lat2 - lat1) * pi() / 180 / 2)
        + cos(lat1 * pi() / 180) * cos(lat2 * pi() / 180)
        * sin((lon2 - lon1) * pi() / 180 / 2) * sin((lon2 - lon1) * pi() / 180 / 2)
    ))) END
$$;
