"""Report templates; a package only so that they install with tuner."""
