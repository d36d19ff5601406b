"""The pysyncobj adapter: the only code that knows pysyncobj exists."""
