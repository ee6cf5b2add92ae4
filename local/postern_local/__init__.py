"""Postern's embedded local mode. Production code (functions/, layers/, gateway/) never imports this."""
