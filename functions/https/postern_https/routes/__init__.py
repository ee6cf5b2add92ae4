"""One Powertools ``Router`` per route family; ``app.py`` includes them all."""
