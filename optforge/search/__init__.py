"""Search strategies. Each plugs into the engine through `optforge.search.base.Strategy`."""
