"""The one exception type for data problems a user can cause and fix."""


class DataError(ValueError):
    """A user-caused data problem: a missing path, an unreadable image, a bad list file, ...

    The message is one sentence that names the offending file or value and says
    what to do about it. Subclassing ``ValueError`` keeps ``except ValueError``
    callers working.
    """

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path  # the file at fault, where there is one (for bad-file logs)
