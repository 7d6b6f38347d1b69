"""User-facing errors.

A :class:`UserError` is something the person running raysym can fix (a bad flag, a bad file, an
occupied output folder). The CLI prints its message as one paragraph and exits with code 2, without a
traceback. Anything else is a bug in raysym and keeps its traceback.
"""


class UserError(Exception):
    """A problem in the input, with a message that names the problem and the fix."""

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        # One paragraph by construction: a user's value quoted in the message (a name holding a newline,
        # say) is shown escaped instead of breaking the paragraph.
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))
