"""The few exceptions the node client raises; each carries a stable ``code``.

``code`` is what the CMS stores and shows (``ConnectionReport.error_code``,
``Server.last_error``); ``message`` says in words what failed and what to check.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base class: anything that went wrong talking to a node."""

    code = "node_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message


class NodeUnreachable(NodeError):
    """No answer: connection refused, timeout, DNS failure, unknown QuickConnect ID."""

    code = "unreachable"


class NodeAuthFailed(NodeError):
    """Wrong username or password, or too many failed attempts (``too_many_attempts``)."""

    code = "auth_failed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class CertificateChanged(NodeError):
    """The node's TLS certificate is not the one pinned at first contact."""

    code = "certificate_changed"

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class IdentityChanged(NodeError):
    """The node at the server's address is not the one that was added (another serial):
    nothing more is sent to it, the password exchange included."""

    code = "identity_changed"

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class NodeBadResponse(NodeError):
    """The peer answered, but not like a node (not JSON, wrong shape, 5xx, no TLS)."""

    code = "bad_response"


class NodeBadAnswer(NodeBadResponse):
    """The node answered against the protocol: too large, nested too deep, too slow to
    finish, not JSON, or not of its schema (``protocol.messages``)."""

    code = "bad_answer"


class NodeBusy(NodeError):
    """This CMS process is already waiting for that node on behalf of another web
    request; refused at once instead of tying up one more web thread."""

    code = "busy"


class EpochRefused(NodeError):
    """A takeover or release was fenced off: the node has seen a newer epoch."""

    code = "stale_epoch"

    def __init__(
        self, message: str, *, newest_epoch: int | None = None, status: int | None = 409
    ) -> None:
        super().__init__(message, status=status)
        self.newest_epoch = newest_epoch


class NodeRefused(NodeError):
    """Any other refusal (4xx) with the node's own code: ``locked``, ``bad_path``, ..."""

    code = "refused"


class EpochUnproven(NodeRefused):
    """The node refused an epoch because it came without the proof of the CMS it is
    paired with (paired with another CMS, or reset): unlike :class:`EpochRefused` the
    command was not superseded, so the caller must not take it as done."""

    code = "epoch_unproven"
