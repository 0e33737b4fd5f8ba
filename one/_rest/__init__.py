"""The Alyx REST session behind `one.webclient`: pagination, retries, response cache, schema,
records and errors."""
