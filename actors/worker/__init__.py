"""The worker agent: the task registry and job context, the agent process, its executors."""
