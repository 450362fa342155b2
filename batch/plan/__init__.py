"""Rows to desired changes: the column mapping and row rules, the pool's schema, lookups, the plan
summary.
"""
