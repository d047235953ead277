"""Test infrastructure: the Docker engine fixture, tiny image builds, a local OCI registry (Debian's
docker-registry) and a proxy that stalls or trickles bytes. Not fakes of our dependencies: real things, run locally."""
