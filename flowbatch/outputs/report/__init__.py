"""`flowbatch report`: one run as a self-contained HTML page.

    data          what the report shows, as plain data (one row per top-level job)
    timeline      every attempt on every compute slot, as inline SVG
    html          the page

This `__init__` imports nothing.
"""
