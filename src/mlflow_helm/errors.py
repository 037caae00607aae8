"""The one exception family for problems the user can fix, each with a hint."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input or environment; shown without a traceback."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class BadFlag(UserError):
    """A flag value is invalid; raised before any API call."""


class PermissionDenied(UserError):
    """A Google API answered 403: names the permission and the role that grants it."""

    exit_code = 3


class CloudError(UserError):
    """A Google API or long-running operation failed for a reason we cannot retry."""

    exit_code = 4


class HelmFailed(UserError):
    """Helm (install, upgrade, test) failed."""

    exit_code = 5


class NotInstalled(UserError):
    """`status` or `test` of a release Helm does not know in that namespace."""

    exit_code = 6
