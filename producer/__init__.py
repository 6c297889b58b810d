"""The producer side of Conveyor: ``Producer`` puts jobs on a queue, feeds generate them."""

from producer.producer import Producer

__all__ = ["Producer"]
