"""Authentication: the environment administrator, database users, sessions, throttling."""
