"""Pure decisions against abuse: the lock-out of guessers, per-source rate
limits, sampled logging of junk. Their edge is pbx/server/security.py."""
