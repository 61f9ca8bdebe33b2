"""Running a Plan: deciding what is ready (pure) and doing it (async, one task group).

    runner        run_plan: the async driver between the Frontier and the executors
    setup         a run's ids, job ids and options before it starts
    signals       how a run meets SIGINT / SIGTERM / SIGHUP
    frontier      the Frontier: synchronous bookkeeping of what is ready (by critical
                  path), the job records it keeps, and the failure cascade
    placement     host capacity and where an attempt goes
    hosts         hosts lost mid-run and how long a run waits for them
    records       what a run left, as typed records (job, attempt, run, RunStatus), and
                  their JSON in AWS Batch's DescribeJobs shapes
    state         JobState, Event and the one table of transitions (AWS Batch's lifecycle)
    clock         the time a run sees: the system's, or FakeClock (autojump) in tests
    fingerprint   what a job's success was made of (inputs, command, image)
    resume        which jobs would run again, and why (`flowbatch plan`, `run --resume`)

Only `runner`, `signals` and `clock` touch anyio; the rest is synchronous and testable without an
event loop (an import-linter contract keeps it so). The runner emits JobEvents to sinks
the CLI passes in: it never imports the store or the outputs. This `__init__` imports
nothing.
"""
