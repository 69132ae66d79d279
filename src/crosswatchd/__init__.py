"""crosswatchd: Plex and Tautulli plays to Trakt and SIMKL, exactly once, through a durable outbox."""

__version__ = "0.1.0"
