"""A run's record in S3: the checkpoint of its journal and the lease that keeps one run per report.
"""
