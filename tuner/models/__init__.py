"""Built-in LightningModules: the standard examples of the field."""
