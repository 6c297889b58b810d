"""The consumer side of Conveyor: execution, worker loop, pools and the supervisor.

The consumer never imports a backend: it sees ``services.protocol`` only.
"""
