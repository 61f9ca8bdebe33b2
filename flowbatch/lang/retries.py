"""Retry strategies: `retry { attempts, evaluate_on_exit, backoff }` checked against AWS
Batch's limits (1 to 10 attempts, at most 5 rules, patterns of digits or text that
may end in `*`) and built into `model.RetryStrategy`.
"""

from __future__ import annotations

from typing import Literal

import flowbatch.lang.syntax as s
from flowbatch.lang.diagnostics import Span
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
            raise invalid("unknown-retry-attribute", entry.key_span, name=name, known=RETRY_KEYS)
    attempts = 1
    if "attempts" in entries:
        attempts = expect_int(entries["attempts"].value, "attempts", minimum=-(2**31))
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise invalid(
                "retry-attempts",
                entries["attempts"].value.span,
                attempts=attempts,
                limit=MAX_ATTEMPTS,
            )
    rules: tuple[RetryRule, ...] = ()
    if "evaluate_on_exit" in entries:
        items = expect_list(entries["evaluate_on_exit"].value, "evaluate_on_exit")
        if len(items) > MAX_RETRY_RULES:
            raise invalid(
                "retry-rules", items[MAX_RETRY_RULES].span, count=len(items), limit=MAX_RETRY_RULES
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
            raise invalid("unknown-rule-attribute", entry.key_span, name=name, known=RULE_KEYS)
    if "action" not in entries:
        raise invalid("rule-action-missing", item.span)
    action = expect_str(entries["action"].value, "action").lower()
    if action not in ("retry", "exit"):
        raise invalid("rule-action", entries["action"].value.span, action=action)
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
        raise invalid("pattern-length", span, name=name, limit=_PATTERN_MAX)
    body = text[:-1] if text.endswith("*") else text
    if "*" in body:
        raise invalid("pattern-star", span, name=name)
    if name == "on_exit_code" and body and not body.isdigit():
        raise invalid("exit-code-pattern", span, name=name, text=text)
