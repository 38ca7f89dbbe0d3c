"""The errors every bench command turns into one line: ConfigError (exit 2), Interrupted (128 + signal)."""


class ConfigError(ValueError):
    """A bad setting or input: the message is one line a user can act on."""


class Interrupted(Exception):
    """SIGTERM/SIGINT stopped a run after its current cell was saved and recorded as `interrupted`."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as shells report it: 130 for SIGINT, 143 for SIGTERM


def short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without building the whole repr of a huge
    value first: every value an error quotes goes through it, so an error stays one short line."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 3, 4
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def short_text(text: str, limit: int = 300) -> str:
    """A message from elsewhere (a library's error) cut to one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
