"""Remote data back-ends: S3 (`one.remote.aws`) and the remote client parameters
(`one.remote.base`).  HTTP downloads live in `one.webclient`."""
