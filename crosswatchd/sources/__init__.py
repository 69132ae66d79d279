"""Event sources: Plex webhooks, Tautulli webhooks and the Tautulli history API."""
