"""Built-in Hydra config groups; a package only so that they install with tuner."""
