"""The ``conveyor`` command line's plumbing, shared by the producer's and the consumer's commands.

* ``app``: the ``conveyor`` group, assembled from a table of commands imported when run;
* ``lazy``: the group class that reads that table;
* ``command``: command and group classes that show Conveyor's errors as one line and an exit code;
* ``options``: the queue, connection and password flags, and the settings they become;
* ``logging_options``: ``--log-level`` and ``--log-format``, before or after any command;
* ``arguments``: how ``ARG`` and ``KEY=VALUE`` words from the shell become Python values.

This package and ``producer.cli`` / ``consumer.cli`` are the only modules that import click.
"""
