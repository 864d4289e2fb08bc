"""The worker: what runs inside every dump and restore Job (and by hand, as `lifeboat`)."""
