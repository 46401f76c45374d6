"""The root of the package's errors, so that one place (``cli.main``) can tell a user's bad
input from a bug.

Every subpackage keeps its own ``errors`` module (``DataError``, ``EventsError``,
``ModelError``, ``TrainingError``, ``RosError``) and each of those derives from
:class:`StereoSpikeError`. Messages name the file, option or value at fault; the command line
prints them as one line and exits with status 2, while anything else stays a traceback, because
it is a bug to fix rather than input to correct.
"""

from __future__ import annotations


class StereoSpikeError(Exception):
    """Base class: input (a file, option or value) that the package cannot use as given."""


class UsageError(StereoSpikeError, ValueError):
    """A command-line value that is out of range or does not fit the others."""
