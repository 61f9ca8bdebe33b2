"""What a Plan or a run is shown as. None of these modules reads the store: the CLI
reads it and hands them records (`flowbatch.run.records`).

    progress      the terminal progress reporter of `flowbatch run`
    graph         a Plan (optionally coloured by a run) drawn through Graphviz's `dot`
    dot           the DOT text `flowbatch graph` prints
    mermaid       a Mermaid flowchart (Markdown, step summaries)
    junit         one run as JUnit XML
    step_summary  one run as a GitHub step summary
    jobview       text from a record made safe to show: control characters, width, log tails
    report/       `flowbatch report`: data (what it shows), timeline (SVG), html (the page)

This `__init__` imports nothing.
"""
