"""The job machinery: the CLI, the worker that claims queued runs, the runner that executes one."""
