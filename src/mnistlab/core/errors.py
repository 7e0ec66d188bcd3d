"""Errors a user can fix: the CLI prints them as one line and exits non-zero, no traceback."""


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception's message squeezed onto one line, for terminals, tags and logs."""
    return " ".join(str(exc).split())[:limit]


class MnistlabError(Exception):
    """Base class; ``exit_code`` is what the process returns."""

    exit_code = 1


class ConfigError(MnistlabError):
    """The composed config is not something we can run (bad key, type or value)."""

    exit_code = 2

    NO_VALUE = object()

    def __init__(self, key: str, problem: str, value: object = NO_VALUE) -> None:
        self.key, self.value, self.problem = key, value, problem
        where = key if value is self.NO_VALUE else f"{key}={value!r}"
        super().__init__(f"{where}: {problem}" if key else problem)


def resume_in_a_sweep(value: object = ConfigError.NO_VALUE) -> ConfigError:
    """``resume=`` given to a sweep (or one of its jobs): refused the same way everywhere."""
    return ConfigError("resume", "continues one interrupted run; it cannot be part of a sweep (drop -m)", value)


class DataError(MnistlabError):
    """The data directory or one of its files is missing, corrupt or not MNIST."""


class TrackingError(MnistlabError):
    """The MLflow tracking store cannot be used. ``cause``: the store's own exception when the
    cause is not one the message can name (its traceback is saved, as an unexpected error's is)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that runs end KILLED instead of being left RUNNING."""
