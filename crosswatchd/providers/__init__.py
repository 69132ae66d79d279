"""Delivery targets (Trakt, SIMKL) behind one interface, :class:`.base.Provider`."""
