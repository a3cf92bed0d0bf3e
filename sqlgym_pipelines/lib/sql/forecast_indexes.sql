-- The six indexes seed 002 names, one statement per line (name first, for the checks).
CREATE INDEX IF NOT EXISTS idx_forecast_business_date ON forecast_data (business_date);
CREATE INDEX IF NOT EXISTS idx_forecast_state ON forecast_data (state);
CREATE INDEX IF NOT EXISTS idx_forecast_state_date ON forecast_data (state, business_date);
CREATE INDEX IF NOT EXISTS idx_forecast_dma ON forecast_data (dma_id) WHERE dma_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_forecast_dc ON forecast_data (dc_id) WHERE dc_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_forecast_composite ON forecast_data (business_date, state, restaurant_id, inventory_item_id);
