"""Delivery targets (Trakt, SIMKL) behind one interface, :class:`~crosswatchd.providers.base.Provider`."""
