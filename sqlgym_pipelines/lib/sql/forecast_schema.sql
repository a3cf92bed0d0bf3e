-- The forecast tables exactly as seed 002 §4 defines them (idempotent).
CREATE TABLE IF NOT EXISTS forecast_data (
    id SERIAL PRIMARY KEY,
    restaurant_id INTEGER NOT NULL,
    inventory_item_id INTEGER NOT NULL,
    business_date DATE NOT NULL,
    dma_id VARCHAR(50),
    dc_id INTEGER,
    state VARCHAR(2) NOT NULL,
    y_05 DECIMAL(10, 2),
    y_50 DECIMAL(10, 2) NOT NULL,
    y_95 DECIMAL(10, 2),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(restaurant_id, inventory_item_id, business_date)
);

CREATE TABLE IF NOT EXISTS forecast_sync_status (
    id SERIAL PRIMARY KEY,
    sync_type VARCHAR(50) NOT NULL,
    last_sync_timestamp TIMESTAMP NOT NULL,
    last_sync_date DATE,
    records_synced INTEGER,
    status VARCHAR(20),
    error_message TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Storage, not schema: free space on each page lets an upsert's changed rows be HOT updates
-- (no new entries in the seven indexes); applies to pages written from now on. A re-issued
-- forecast revises most rows, so half of each page is kept for their new versions: at 80,
-- half the updates of a 50%-changed day missed the page and each wrote 8 index entries.
ALTER TABLE forecast_data SET (fillfactor = 50);
