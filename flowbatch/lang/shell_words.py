"""Which command strings need no shell: those /bin/sh would run as a plain list of words.

A job's string `command` runs under `/bin/sh -c`. When the string is one simple command
made of plain words (no quoting, expansion, redirection, operator, comment, assignment
or glob), the shell's only work is to split it at blanks and find the program, so the
executor may split it here and exec the program itself, as make does, and save a
shell's start per job. `plain_words` says when: it is conservative, and anything it is
not sure of (a character outside a small safe set, a first word that is a shell builtin
or a reserved word, where the shell's own command would behave differently from the
program of that name, `echo` for one) goes to the shell as before.

What the shell adds to the environment of what it runs is for the executor to do
(`PWD`, see `executors.local`).
"""

from __future__ import annotations

import re

__all__ = ["SHELL_WORDS", "plain_words"]

# Characters that are never special to sh anywhere in a word, and blanks. Everything
# else (quotes, `\`, `$`, backquote, `;&|<>()`, `*?[]`, `~`, `#`, `=`, `{}`, `!`, `^`,
# line breaks, non-ASCII) sends the command to the shell.
_PLAIN = re.compile(r"[ \t]*[A-Za-z0-9_\-./,:+@%]+(?:[ \t]+[A-Za-z0-9_\-./,:+@%=]+)*[ \t]*")

# The first words the shell runs itself (POSIX special and regular builtins, dash's and
# bash's) or reads as syntax: these keep the shell, whose own version may differ from a
# program of the same name (dash's `echo` reads backslashes; `cd`, `exit` and `export`
# have no program at all).
_SHELL_WORDS_TEXT = """
    ! { } [ [[ ]] . : alias bg bind break builtin caller case cd chdir command compgen
    complete compopt continue coproc declare dirs disown do done echo elif else enable
    esac eval exec exit export false fc fg fi for function getopts hash help history if
    in jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly
    return select set shift shopt source suspend test then time times trap true type
    typeset ulimit umask unalias unset until wait while
"""
SHELL_WORDS = frozenset(_SHELL_WORDS_TEXT.split())


def plain_words(command: str) -> list[str] | None:
    """The words `/bin/sh -c command` would run, when it would do nothing but split the
    string at blanks and run the program its first word names; else None."""
    if not _PLAIN.fullmatch(command):
        return None
    words = command.split()
    if words[0] in SHELL_WORDS:
        return None
    return words
