"""``twin play``, ``twin smoke`` and ``twin bench``."""
