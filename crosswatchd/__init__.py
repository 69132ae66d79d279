"""crosswatchd: Plex and Tautulli plays to Trakt and SIMKL, exactly once, via a durable outbox."""

__version__ = "0.1.0"
