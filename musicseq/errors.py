"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(ValueError):
    """Bad input from the user (a path, a flag value, a model directory): one clear line."""


class MusicseqWarning(UserWarning):
    """An option that has no effect in the combination given; the CLI prints it on one line."""
