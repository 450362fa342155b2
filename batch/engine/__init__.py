"""The one pipeline every write goes through: the runner, its window, the breaker, the brake,
signals, exit codes.
"""
