"""The job store: runs, jobs and every state change, in SQLite; the only package that
imports sqlite3.

    jobstore      Store (the one writer during a run, many readers), StoreError, DB_NAME
    schema        the schema, its versions (PRAGMA user_version) and opening a database
    rows          what the store is told, as table rows
    views         reading jobs and runs back as records (`flowbatch.run.records`)
    lost          runs whose runner is gone: judging the runner, settling what it left
    catalog       the server's compute environments, queues and definitions (AWS shapes)

This `__init__` imports nothing: `from flowbatch.store.jobstore import Store`.
"""
