-- test-data mode: forecast_data gains the columns that tag synthetic rows, and a table
-- records each generated scenario (seed 001: "test-specific columns", "test scenario tracking").
ALTER TABLE forecast_data ADD COLUMN IF NOT EXISTS test_scenario_id VARCHAR(64);
ALTER TABLE forecast_data ADD COLUMN IF NOT EXISTS is_generated BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS test_scenarios (
    scenario_id VARCHAR(64) PRIMARY KEY,
    description TEXT NOT NULL,
    rows_generated INTEGER NOT NULL,
    first_date DATE,
    last_date DATE,
    states TEXT[] NOT NULL,
    seed BIGINT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
