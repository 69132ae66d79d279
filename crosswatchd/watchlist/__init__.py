"""The Plex watchlist kept in step with Trakt's watchlist and SIMKL's Plan to Watch (issue 17).

One concept per module: :mod:`.items` (an item's identity across services, groups of items
that are one thing), :mod:`.planner` (the pure planner: modes ``plex`` and ``two-way``, removal
wins, each side's last synced state), :mod:`.state` (the pass's own SQLite file),
:mod:`.reading` (each side read into a list, cheaply), :mod:`.passes` (one pass:
read → plan → queue in the outbox → remember), :mod:`.daemon` (the pass and the Plex
watchlist drainers inside ``serve``). Changes travel through the outbox like plays.
"""
