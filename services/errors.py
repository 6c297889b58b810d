"""Every error Conveyor raises on purpose, under one root so callers can catch them all.

Control-flow signals that must not be swallowed by ``except Exception`` derive from
``BaseException`` instead (see ``consumer.signals``).
"""


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """A setting, URL or ``module:attribute`` path is wrong; fix the configuration."""


class DecodeError(ConveyorError):
    """Bytes taken from a queue are not a job this version of Conveyor can run."""


class JobDefinitionError(ConveyorError):
    """A job function cannot be registered (duplicate name, not callable, bad options)."""


class UnknownJobError(ConveyorError):
    """A job name is not in the registry."""


class JobArgumentsError(ConveyorError):
    """The arguments given at enqueue do not fit the job function's signature."""


class EncodeError(ConveyorError):
    """A job's arguments cannot be encoded (not JSON-serialisable, too large, too deep)."""


class QueueFullError(ConveyorError):
    """A bounded queue stayed full for the whole enqueue timeout; nothing was enqueued."""


class BackendUnavailableError(ConveyorError):
    """The backend did not answer within its timeout: the operation is *not confirmed*.

    It may or may not have happened (a reply can be lost after the command ran). Every operation
    that raises it is safe to repeat: puts are put-if-absent by job id, and settling a delivery
    twice is a no-op.
    """


class JobNotFinishedError(ConveyorError):
    """A job's result was asked for, but the job did not finish within the timeout."""
