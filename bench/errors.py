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
