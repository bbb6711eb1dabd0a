"""Errors that reach the user as one clear line, never as a traceback."""


class FeatscopeError(Exception):
    """An ordinary mistake or an unusable input: shown to the user as one line."""


class ImageLoadError(FeatscopeError):
    """One image could not be read; the build skips it and goes on."""


class IncompleteRunError(FeatscopeError):
    """The run directory holds no complete build."""
