"""The language: `.flow` text to a frozen, checked `Plan`, purely (no I/O but reading the
files it is given, no event loop). `flowbatch validate` and `graph` use nothing else.

    load          the front half in one call: read files, parse, analyze, compile
    lexer         text -> tokens (one master regular expression)
    tables        the grammar's LALR(1) tables (built by lark, cached) and the loop that runs
                  them; the only module that imports lark
    parse         tokens -> syntax.File; parse_errors puts a failed parse into words
    syntax        the surface tree: what the user wrote, with spans
    analyze       syntax -> model: names, defaults, inheritance, checks; with its parts
                  jobs, computes, retries, dependencies, values
    template      command templates (Jinja2 in a sandbox); the only module that imports jinja2
    model         the meaning, frozen: Pipeline, JobSpec, Queue, ComputeEnv
    compile       model -> Plan (the DAG, its order); the only module that imports networkx
    diagnostics   Source, Span, FlowError and its kinds, and their rendering

This package's `__init__` imports nothing, so that importing one module costs only it.
"""
