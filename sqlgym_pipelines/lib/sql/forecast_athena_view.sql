-- The seed's columns in forecast_data's types: what the sync reads, one business_date at a time.
CREATE OR REPLACE VIEW {view} AS
SELECT
  CAST(restaurant_id AS integer) AS restaurant_id,
  CAST(inventory_item_id AS integer) AS inventory_item_id,
  CAST(business_date AS date) AS business_date,
  CAST(dma_id AS varchar) AS dma_id,
  CAST(dc_id AS integer) AS dc_id,
  CAST(state AS varchar) AS state,
  CAST(y_05 AS decimal(10, 2)) AS y_05,
  CAST(y_50 AS decimal(10, 2)) AS y_50,
  CAST(y_95 AS decimal(10, 2)) AS y_95
FROM {table}
