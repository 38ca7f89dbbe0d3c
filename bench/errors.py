"""The one error type every bench command turns into a one-line message (exit 2)."""


class ConfigError(ValueError):
    """A bad setting or input: the message is one line a user can act on."""
