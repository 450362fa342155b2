"""The commands: run, retry, undo, export, merge, the dry run and the demo."""
