"""Where a run's files live: a local directory, an S3 prefix, and the tenant's place for it."""
