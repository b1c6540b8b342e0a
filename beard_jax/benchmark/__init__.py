"""The benchmark end to end: model pool → attacks → records → metrics → leaderboards."""
