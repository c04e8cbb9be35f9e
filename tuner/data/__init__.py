"""Built-in LightningDataModules: real data that ships with a package, never downloaded."""
