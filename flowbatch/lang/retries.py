"""Retry strategies: `retry { attempts, evaluate_on_exit, backoff }` checked against AWS
Batch's limits (1 to 10 attempts, at most 5 rules, patterns of digits or text that
may end in `*`) and built into `model.RetryStrategy`.
"""

from __future__ import annotations

from typing import Literal

import flowbatch.lang.syntax as s
from flowbatch.lang.diagnostics import Kind, Span, did_you_mean
from flowbatch.lang.model import MAX_ATTEMPTS, MAX_RETRY_RULES, RetryRule, RetryStrategy
from flowbatch.lang.values import (
    expect_duration,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    invalid,
)

RETRY_KEYS = {"attempts", "evaluate_on_exit", "backoff"}
RULE_KEYS = {"on_exit_code", "on_status_reason", "on_reason", "action"}
_PATTERN_MAX = 512


def retry_strategy(value: s.Value, key: str) -> RetryStrategy:
    """A `retry { ... }` block as AWS Batch's retryStrategy; raises Invalid."""
    entries = {e.key: e for e in expect_map(value, key).entries}
    for name, entry in entries.items():
        if name not in RETRY_KEYS:
            raise invalid(
                f"unknown retry attribute `{name}`",
                entry.key_span,
                hint=did_you_mean(name, RETRY_KEYS, "attribute"),
                kind=Kind.UNKNOWN_ATTRIBUTE,
            )
    attempts = 1
    if "attempts" in entries:
        attempts = expect_int(entries["attempts"].value, "attempts", minimum=-(2**31))
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise invalid(
                f"`attempts` must be 1 to {MAX_ATTEMPTS}, not {attempts}",
                entries["attempts"].value.span,
                kind=Kind.RETRY,
                hint="AWS Batch allows 1 to 10 attempts",
            )
    rules: tuple[RetryRule, ...] = ()
    if "evaluate_on_exit" in entries:
        items = expect_list(entries["evaluate_on_exit"].value, "evaluate_on_exit")
        if len(items) > MAX_RETRY_RULES:
            raise invalid(
                f"{len(items)} `evaluate_on_exit` rules; AWS Batch allows at most "
                f"{MAX_RETRY_RULES}",
                items[MAX_RETRY_RULES].span,
                kind=Kind.RETRY,
            )
        rules = tuple(_rule(item) for item in items)
    backoff = None
    if "backoff" in entries:
        backoff = expect_duration(entries["backoff"].value, "backoff")
    return RetryStrategy(attempts=attempts, rules=rules, backoff=backoff)


def _rule(item: s.Value) -> RetryRule:
    entries = {e.key: e for e in expect_map(item, "evaluate_on_exit").entries}
    for name, entry in entries.items():
        if name not in RULE_KEYS:
            raise invalid(
                f"unknown rule attribute `{name}`",
                entry.key_span,
                kind=Kind.RETRY,
                hint=did_you_mean(name, RULE_KEYS, "attribute"),
            )
    if "action" not in entries:
        raise invalid(
            "a retry rule needs an `action`",
            item.span,
            kind=Kind.RETRY,
            hint='action = "retry" or action = "exit"',
        )
    action = expect_str(entries["action"].value, "action").lower()
    if action not in ("retry", "exit"):
        raise invalid(
            f"unknown action `{action}`",
            entries["action"].value.span,
            kind=Kind.RETRY,
            hint='action is "retry" or "exit"',
        )
    patterns: dict[str, str] = {}
    for name in ("on_exit_code", "on_status_reason", "on_reason"):
        if name not in entries:
            continue
        raw = entries[name].value
        text = str(raw.value) if isinstance(raw, s.Number) else expect_str(raw, name)
        _check_pattern(name, text, raw.span)
        patterns[name] = text
    verdict: Literal["retry", "exit"] = "retry" if action == "retry" else "exit"
    return RetryRule(action=verdict, **patterns)


def _check_pattern(name: str, text: str, span: Span) -> None:
    if len(text) > _PATTERN_MAX:
        raise invalid(f"`{name}` is longer than {_PATTERN_MAX} characters", span, kind=Kind.RETRY)
    body = text[:-1] if text.endswith("*") else text
    if "*" in body:
        raise invalid(
            f"`{name}`: `*` may only end a pattern",
            span,
            kind=Kind.RETRY,
            hint="patterns match exactly, or by prefix when they end in `*`",
        )
    if name == "on_exit_code" and body and not body.isdigit():
        raise invalid(
            f"`on_exit_code` must be digits, optionally ending in `*`, not `{text}`",
            span,
            kind=Kind.RETRY,
            hint='for example: on_exit_code = "137"',
        )
