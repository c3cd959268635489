"""The one exception type for user mistakes (bad input, missing files, impossible arguments).

Command-line entry points catch it and print its message on one line with a non-zero exit,
instead of a traceback: the message itself must name the problem and the fix.
"""


class TinynetError(ValueError):
    """A problem the user can fix; ``str(error)`` says what is wrong and what to do."""


class Preempted(Exception):
    """Training stopped on SIGTERM (a preemptible VM's or Colab's shutdown notice) after
    writing a checkpoint; command lines exit with status 143 (128 + SIGTERM) and the same
    command resumes there."""
