"""Statistics every comparison in the project shares: accuracy intervals and paired differences."""
