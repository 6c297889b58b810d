"""``python -m producer``: ``conveyor enqueue`` on its own."""

from producer.cli import enqueue_command

if __name__ == "__main__":
    enqueue_command()
