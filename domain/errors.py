"""A command that the current state of the ledger does not allow."""


class Rejected(Exception):
    """Names the field at fault, so the user is told where and what: ``version: no version 5``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def within(self, where: str) -> "Rejected":
        """The same fault, located inside a part of a document (``claim 2``)."""
        return Rejected(f"{where}: {self.field}" if self.field else where, self.message)
