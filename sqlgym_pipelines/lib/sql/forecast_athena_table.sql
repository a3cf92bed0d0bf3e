-- The raw forecast files as Athena sees them (Hive DDL): every Parquet under the prefix,
-- whatever days each file holds; the view filters by business_date.
CREATE EXTERNAL TABLE IF NOT EXISTS {table} (
  `restaurant_id` int,
  `inventory_item_id` int,
  `business_date` date,
  `dma_id` string,
  `dc_id` int,
  `state` string,
  `y_05` double,
  `y_50` double,
  `y_95` double
)
STORED AS PARQUET
LOCATION {location}
