"""Typed errors that say what is wrong and how to fix it."""


class SqlgymError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(SqlgymError):
    """A setting, config file or run config is malformed or names something that does not exist."""


class ConnectionFailed(SqlgymError):
    """A server (Postgres, S3, Athena, Neon, Snowflake) could not be reached or refused us."""


class QueryFailed(SqlgymError):
    """A query was rejected or failed on the server; the message carries the server's reason."""


class StackError(SqlgymError):
    """The embedded local stack could not start, stop or be found."""


class BranchError(SqlgymError):
    """A Neon branch operation was refused or names an unknown branch."""
