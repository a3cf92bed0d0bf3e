"""LakeResource: where the Postgres -> S3 lake lives (bucket + prefix), on top of the S3 resource."""

import dagster as dg
from pydantic import Field

from sqlgym_pipelines.lib.lake_layout import LakeLocation
from sqlgym_pipelines.lib.lake_store import LakeStore
from sqlgym_pipelines.resources.s3 import S3Resource


class LakeResource(dg.ConfigurableResource):
    s3: S3Resource
    bucket: str = Field(description="the lake bucket (SQLGYM_LAKE_BUCKET)")
    prefix: str = Field(default="postgres-sync", description="key prefix (SQLGYM_LAKE_PREFIX)")

    @property
    def location(self) -> LakeLocation:
        return LakeLocation(self.bucket, self.prefix)

    def store(self) -> LakeStore:
        return LakeStore(self.s3.get_client(), self.location)
