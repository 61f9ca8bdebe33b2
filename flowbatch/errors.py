"""The one base of every error flowbatch reports to its user.

A `FlowbatchError` is a problem the user can act on: bad input, a state that cannot be
used, a program outside flowbatch that failed. It carries its fields (each family its
own, typed) and makes its text in one place, its `message` property; the CLI prints any
of them in one place (`flowbatch.cli.reporting.report_error`) and exits with its
`exit_code`. Any other exception that reaches the CLI is a bug in flowbatch and is
reported as one (a traceback, and a request to report it; exit 70).

    FlowbatchError
      FlowError        lang.diagnostics: a pipeline's problem, located (Kind, Span, detail)
      TemplateError    lang.template_error: a command template that fails (line, name)
      SetupError       run.setup: a run that cannot start here (an unset variable, ...)
      InputsError      run.fingerprint: `inputs`/`outputs` past the limits
      StoreError       store.schema: the job database (newer schema, unknown id, locked)
      RenderError      outputs.graph: Graphviz's `dot` missing or failing (exit 1)
      ContainerError   executors.container: an attempt no container runtime can run
      SshError         executors.ssh: a host that cannot be reached or trusted

This module sits below every package (the bottom layer of the package contract) and
imports nothing, so that any of them may raise a FlowbatchError.
"""

from __future__ import annotations

from typing import ClassVar

# sysexits.h's EX_SOFTWARE: "an internal software error has been detected".
EXIT_BUG = 70


class FlowbatchError(Exception):
    """A problem worded for the user. Subclasses keep their fields and override
    `message`; the default is the text the error was made with."""

    # 2: bad input or a state flowbatch cannot use; 1: something outside failed.
    exit_code: ClassVar[int] = 2

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def hint(self) -> str | None:
        return None

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines printed under the message (a list of what it is about), each as it is."""
        return ()

    def __str__(self) -> str:
        return self.message


class HintedError(FlowbatchError):
    """A problem worded in one line, with what to do about it (`hint`)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self._hint = hint

    @property
    def hint(self) -> str | None:
        return self._hint


__all__ = ["EXIT_BUG", "FlowbatchError", "HintedError"]
