"""Where bytes live: owner-only local files, S3 objects, and one interface over both."""
