"""The error a template raises: it does not compile, render or fit its budget."""

from __future__ import annotations

from flowbatch.errors import FlowbatchError


class TemplateError(FlowbatchError):
    """A template that does not compile or render. `line` counts within the template;
    `offset` and `length`, when known, place the problem within the template's text."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        name: str | None = None,
        *,
        offset: int | None = None,
        length: int = 0,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self._message = message
        self.line = line
        self.name = name  # the undefined name, when that is the problem
        self.offset = offset
        self.length = length
        self._hint = hint

    @property
    def message(self) -> str:
        return self._message

    @property
    def hint(self) -> str | None:
        return self._hint
