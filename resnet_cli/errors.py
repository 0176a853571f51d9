"""Errors that reach the user as one line and exit code 2."""


class UserError(Exception):
    """A problem with what the user asked for (flag, value, file); shown as one line, exit 2."""


class SpecError(UserError):
    """An impossible or malformed ResNet specification or input shape."""
