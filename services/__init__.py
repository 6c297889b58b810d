"""The shared core of Conveyor: job model, codec, registry, queue protocol, backends, settings.

Nothing here runs at import time: no connection, no process, no thread, no signal handler.
"""
