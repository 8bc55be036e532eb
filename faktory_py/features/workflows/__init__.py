"""Job dependencies (`custom.after`) and job results (protocol/spec.md §14): the HELD state,
release inside the step that resolved a job's last dependency, and outcome records."""
