"""How fast: the pacer and rate controllers, the quotas read from Cognito, the rate plan, retrying.
"""
