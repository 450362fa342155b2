"""What a run keeps: journal, report, before-images, timeline, lock, and the output guard over
them.
"""
