"""The error a role raises when what another role handed it breaks the contract."""

from __future__ import annotations

MAX_MESSAGE = 2000


class ContractError(ValueError):
    """A file one role wrote and another reads (a bundle's model.json, a label file) that the
    reader must refuse; the message names the file, the field and the fix.

    Always one line (a CLI prints it as is, a log writes it as one record) and of bounded
    length, whatever the input quoted into it.
    """

    def __init__(self, message: object) -> None:
        text = " ".join(str(message).split())
        super().__init__(text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "...")
