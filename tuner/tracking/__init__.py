"""MLflow records of a study: one experiment, a parent run, a child run per trial."""
