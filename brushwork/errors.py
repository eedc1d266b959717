"""User-facing error types.

Every error a user can cause by what they typed or sent is a ``BrushworkError``. The CLI prints
it as one line (``error: …``) and exits with its ``exit_code``; the server maps it to a 4xx.
Anything else that escapes is a bug in brushwork.
"""


class BrushworkError(Exception):
    """Base class: a one-line message that names what was wrong."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split("\n"))


class PromptError(BrushworkError):
    """A prompt that the shapes-world grammar or the A1111 weighting syntax cannot parse."""


class InvalidParameter(BrushworkError):
    """A generation or command parameter outside its documented range."""


class NotFound(BrushworkError):
    """A model, sampler, job or file name that does not exist."""

    http_status = 404


class UnsafePath(BrushworkError):
    """A user-supplied path or name that would escape its allowed root."""


class ModelFileError(BrushworkError):
    """A model file that is broken, of the wrong kind, or refused (pickles)."""


class OutputCheckFailed(BrushworkError):
    """A generated image that failed its checks (NaN, all-zero decode)."""

    exit_code = 3
    http_status = 500
