"""Errors of offline training and evaluation, each naming the file, option or value at fault."""


class TrainingError(Exception):
    """A training or evaluation run cannot proceed (bad data, split, checkpoint or run folder)."""
