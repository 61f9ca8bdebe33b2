"""The quoting state of POSIX sh (and bash) over a command's text, fed piece by piece:
where a word inserted at the current point would land (inside quotes, backticks, `${...}`,
arithmetic, a comment or a here-document), or None where it would be one plain word.

It knows nothing of templates: template_quoting feeds it the text Jinja will emit, one
branch at a time, and asks where each value lands.
"""

from __future__ import annotations

import re

# `shlex.quote` makes a value one shell word. Inside the author's own quotes that word's
# quotes are the author's quotes turned inside out: `echo '{{ x }}'` with x = `a; b`
# renders `echo ''"'"'a; b'"'"''`... and `echo '{{ x }}'` with x = `'; rm -rf ~; '` runs
# `rm`. The same holds in backticks (a backtick ends them whatever the quotes), in a
# comment (a line break in the value ends it), in a here-document (quotes are text
# there, `$(...)` is not), in `${...}` and in arithmetic (bash evaluates `$((...))`,
# `((...))` and `$[...]` after expanding `$(...)` inside them, quotes or not). `$(...)`
# is a fresh shell context: a value there is one word again. This scanner follows POSIX
# sh's quoting over the author's literal text (and bash's `$'...'`, for images whose
# /bin/sh is bash), as Jinja will emit it: whitespace control applied, line breaks
# normalised, each branch of an `{% if %}` and the body of a `{% for %}` followed from
# the state before it. It is conservative where sh is hard to read without parsing it:
# a `case` pattern's `)` inside `$(...)` ends the `$(` for it, and a here-document whose
# delimiter is itself a template value runs to the end.

SH, SUB, SQ, DQ, BQ, PARAM, ARITH, APAREN, COMMENT, HEREDOC, ASQ, BRACKET = range(12)
WHERE = {
    SQ: "inside single quotes",
    ASQ: "inside `$'...'`",
    DQ: "inside double quotes",
    BQ: "inside backticks",
    PARAM: "inside `${...}`",
    ARITH: "inside shell arithmetic",
    APAREN: "inside shell arithmetic",
    BRACKET: "inside shell arithmetic",
    COMMENT: "inside a shell comment",
    HEREDOC: "inside a here-document",
}
_QUOTES_HINT = (
    "values are shell-quoted for you: end the quotes before the value and reopen them "
    'after it (`"$HOME/"{{ params.dir }}"/out"`); a value written `| raw` is inserted '
    "as it is, and quoting it is then up to you"
)

# Not "put it in a variable": bash evaluates a variable's value as arithmetic too, and
# `n='a[$(cmd)]'; echo $((n + 1))` runs cmd.
_ARITH_HINT = (
    "do the arithmetic in the template (`{{ params.n + 1 }}`): shells evaluate a value "
    "inside arithmetic, and bash runs the `$(...)` in it whatever its quotes"
)
HINTS = {
    SQ: _QUOTES_HINT,
    ASQ: _QUOTES_HINT,
    DQ: _QUOTES_HINT,
    BQ: "write `$(...)` instead of backticks: a value inside `$(...)` stays one argument",
    PARAM: 'put the value in a variable first: `v={{ params.x }}; echo "${v:-none}"`',
    ARITH: _ARITH_HINT,
    APAREN: _ARITH_HINT,
    BRACKET: _ARITH_HINT,
    COMMENT: "a line break in the value would end the comment and run the rest: "
    "take the value out of the comment",
    HEREDOC: "quotes are plain text in a here-document: pass the value as an argument "
    "or set a variable before it (`v={{ params.x }}`) and use `$v` in the document",
}
_SPECIAL = {
    SH: re.compile(r"[\\'\"`$()#<\n]"),
    SUB: re.compile(r"[\\'\"`$()#<\n]"),
    SQ: re.compile(r"'"),
    ASQ: re.compile(r"[\\']"),
    DQ: re.compile(r"[\\\"`$]"),
    BQ: re.compile(r"[\\`]"),
    PARAM: re.compile(r"[\\'\"`$}]"),
    ARITH: re.compile(r"[\\'\"`$()]"),
    APAREN: re.compile(r"[\\'\"`$()]"),
    BRACKET: re.compile(r"[\\'\"`$\[\]]"),
    COMMENT: re.compile(r"\n"),
}
_WORD_BREAK = frozenset(" \t\n;&|()")
_DELIMITER_END = frozenset(" \t\n;&|<>()")
# Where a value may be inserted, given everything else about the state: the characters
# before it matter only as `$` (then a value would extend `$`) or a word break (then a
# `#` after it would start a comment).
PREV_KINDS = {"$": "$", **dict.fromkeys(_WORD_BREAK, " ")}


class Shell:
    """The quoting state of POSIX sh after the text fed so far."""

    def __init__(self, ansi_c: bool) -> None:
        self.ansi_c = ansi_c  # `$'...'` is bash's quoting (with `\'`), not `$` and `'...'`
        self.stack = [SH]
        self.escaped = False  # the last character was an unquoted backslash
        self.prev = "\n"  # the last character, for `#` at a word's start and `$`
        # Here-documents to come: (delimiter or None when unknown, `<<-`, quoted).
        self.pending: list[tuple[str | None, bool, bool]] = []
        self.heredoc: tuple[str | None, bool, bool] | None = None
        self.line = ""  # the here-document's line so far
        # The end of the text fed so far when it may join what the next piece of text
        # starts with (`$`, `<<`, `(`): a Jinja tag that renders nothing may sit between.
        self.carry = ""
        # Set once the text before has left the state unknown (an `{% if %}` whose
        # branches disagree): why every value after it is refused, and the hint.
        self.poison: tuple[str, str] | None = None
        # What `cut()` flushed: the next text may have been meant to join it.
        self.cut_off = ""

    def copy(self) -> Shell:
        other = Shell(self.ansi_c)
        other.stack = list(self.stack)
        other.escaped, other.prev, other.carry = self.escaped, self.prev, self.carry
        other.pending, other.heredoc, other.line = list(self.pending), self.heredoc, self.line
        other.poison = self.poison
        other.cut_off = self.cut_off
        return other

    def assign(self, other: Shell) -> None:
        """Take `other`'s state (a copy of it)."""
        copy = other.copy()
        for name in ("stack", "escaped", "prev", "carry", "pending", "heredoc", "line"):
            setattr(self, name, getattr(copy, name))
        self.poison = copy.poison
        self.cut_off = copy.cut_off

    def key(self) -> tuple[object, ...]:
        """What decides where a later value lands (`prev` only by its kind)."""
        return (
            tuple(self.stack),
            self.escaped,
            PREV_KINDS.get(self.prev, "x"),
            tuple(self.pending),
            self.heredoc,
            self.line,
            self.carry,
        )

    def where(self) -> int | None:
        """Why a value here would not be one inert word; None when it would."""
        if BQ in self.stack:
            return BQ
        top = self.stack[-1]
        return None if top in (SH, SUB) else top

    def after_value(self) -> None:
        self.prev = "x"
        if self.stack[-1] == HEREDOC:
            self.line += "\0"  # a line holding a value is never the delimiter

    def flush(self) -> None:
        """A value follows: what was held back is all there is before it."""
        carry, self.carry = self.carry, ""
        if carry:
            self.feed(carry, hold=False)

    def cut(self) -> None:
        """The text goes on elsewhere (a branch): what was held back stands alone."""
        if self.carry:
            self.cut_off = self.carry
            self.flush()

    def joins(self, s: str) -> bool:
        """Whether `s`, next after a `cut()`, would have joined what was cut off (`$`
        and `(` made `$(`, `<` and `<` made `<<`): then the state after is unknown."""
        cut, self.cut_off = self.cut_off, ""
        if not cut or not s:
            return False
        if cut.endswith("$"):
            return s[0] in "({['\""
        if cut.endswith("("):
            return s[0] == "("
        return cut == "<" and s[0] == "<"

    def feed(self, s: str, *, hold: bool = True) -> None:
        s, self.carry = self.carry + s, ""
        i, n = 0, len(s)
        if self.escaped and n:
            self.escaped = False
            self.prev = "x"
            i = 1
        while i < n:
            top = self.stack[-1]
            if top == HEREDOC:
                i = self._heredoc_line(s, i)
                continue
            m = _SPECIAL[top].search(s, i)
            if m is None:
                self.prev = s[-1]
                return
            j = m.start()
            c = s[j]
            before = s[j - 1] if j > i else self.prev
            i = j + 1
            plain = top in (SH, SUB)
            if hold and plain and c in "$(<" and self._held(s, j):
                self.carry = s[j:]
                self.prev = before
                return
            if c == "\\":
                if i >= n:
                    self.escaped = plain
                    self.prev = c
                    return
                i += 1
            elif top in (SQ, ASQ):  # `'` ends them (in `$'...'`, unless escaped)
                self.stack.pop()
            elif c == "\n":
                if top == COMMENT:
                    self.stack.pop()
                if self.pending and self.stack[-1] in (SH, SUB):
                    self._start_heredoc()
            elif c == "'" and top != DQ:
                ansi = self.ansi_c and before == "$" and top != BQ
                self.stack.append(ASQ if ansi else SQ)
            elif c == '"':
                if top == DQ:
                    self.stack.pop()
                else:
                    self.stack.append(DQ)
            elif c == "`":
                if top == BQ:
                    self.stack.pop()
                else:
                    self.stack.append(BQ)
            elif c == "$":
                if s.startswith("((", i):
                    self.stack.append(ARITH)
                    i += 2
                elif s.startswith("(", i):
                    self.stack.append(SUB)
                    i += 1
                elif s.startswith("{", i):
                    self.stack.append(PARAM)
                    i += 1
                elif s.startswith("[", i) and top != DQ:  # bash's old `$[...]`
                    self.stack.append(BRACKET)
                    i += 1
            elif c == "}":  # only special inside ${...}
                self.stack.pop()
            elif c == "[":  # only special inside $[...]
                self.stack.append(BRACKET)
            elif c == "]":
                self.stack.pop()
            elif c == "(":
                if top in (ARITH, APAREN):
                    self.stack.append(APAREN)
                elif s.startswith("(", i) and before in _WORD_BREAK:
                    self.stack.append(ARITH)  # bash's `((...))` (and `for ((...))`)
                    i += 1
                else:
                    self.stack.append(SUB)
            elif c == ")":
                if top == ARITH:
                    self.stack.pop()
                    i += 1 if s.startswith(")", i) else 0
                elif top in (SUB, APAREN):
                    self.stack.pop()
            elif c == "#":
                if before in _WORD_BREAK:
                    self.stack.append(COMMENT)
            elif c == "<" and s.startswith("<", i):
                if s.startswith("<", i + 1):  # `<<<`, a here-string: an ordinary word
                    i += 2
                else:
                    i = self._delimiter(s, i + 1)
            self.prev = s[i - 1] if i <= n else c

    def _held(self, s: str, j: int) -> bool:
        """Whether `s[j:]`, at the end of `s`, may mean more with the text that follows."""
        rest = s[j:]
        if rest in ("$", "$(", "(", "<", "<<", "<<-"):
            return True
        if rest.startswith("<<") and not rest.startswith("<<<"):
            return self._delimiter_end(s, j + 2) is None
        return False

    def _delimiter_end(self, s: str, i: int) -> tuple[int, str | None, bool] | None:
        """The here-document delimiter word from `s[i:]` (after `<<` and a `-`): where it
        ends, the word (None if empty) and whether it was quoted; None if it runs to the
        end of `s`."""
        i += s.startswith("-", i)
        while i < len(s) and s[i] in " \t":
            i += 1
        word: list[str] = []
        quoted = False
        while i < len(s) and s[i] not in _DELIMITER_END:
            c = s[i]
            if c in "'\"":
                end = s.find(c, i + 1)
                if end < 0:
                    return None
                word.append(s[i + 1 : end])
                quoted, i = True, end + 1
            elif c == "\\":
                if i + 1 >= len(s):
                    return None
                word.append(s[i + 1])
                quoted, i = True, i + 2
            else:
                word.append(c)
                i += 1
        if i >= len(s):
            return None
        return i, "".join(word) or None, quoted

    def _delimiter(self, s: str, i: int) -> int:
        strip = s.startswith("-", i)
        found = self._delimiter_end(s, i)
        if found is None:  # it runs into a value (or the end): unknown, runs to the end
            self.pending.append((None, strip, True))
            return len(s)
        end, word, quoted = found
        self.pending.append((word, strip, quoted))
        return end

    def _start_heredoc(self) -> None:
        self.heredoc = self.pending.pop(0)
        self.stack.append(HEREDOC)
        self.line = ""

    def _heredoc_line(self, s: str, i: int) -> int:
        end = s.find("\n", i)
        if end < 0:
            self.line += s[i:]
            self.prev = s[-1]
            return len(s)
        self.line += s[i:end]
        self.prev = "\n"
        assert self.heredoc is not None
        delimiter, strip, quoted = self.heredoc
        if not quoted and (len(self.line) - len(self.line.rstrip("\\"))) % 2:
            # An unquoted document joins a line ending in `\` with the next one before
            # it looks for the delimiter.
            self.line = self.line[:-1]
            return end + 1
        line = self.line.lstrip("\t") if strip else self.line
        self.line = ""
        if delimiter is not None and line == delimiter:
            self.stack.pop()
            self.heredoc = None
            if self.pending:
                self._start_heredoc()
        return end + 1
