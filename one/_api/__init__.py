"""`One`, `OneAlyx` and `OneRelease`, and what they share (paths, messages, remote helpers).

`one.api` re-exports the classes; nothing here imports `one.api` or the command line.
"""
