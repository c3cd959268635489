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


_interrupts = []  # SIGINTs a command line's handler saw (tinynet.experiment.run_cli)


def note_interrupt(signum):
    """Records a Ctrl-C; ``interrupt_requested`` is then true until ``clear_interrupts`` (a
    command line's start)."""
    _interrupts.append(signum)


def clear_interrupts():
    _interrupts.clear()


def interrupt_requested():
    """True once a command line has seen Ctrl-C. Its ``KeyboardInterrupt`` can be swallowed by
    a library's bare ``except:`` or a C++ layer in between; the training loop checks this
    between steps so that the run still stops."""
    return bool(_interrupts)
