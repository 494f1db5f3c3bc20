"""Leaderboard tables, result records and plots."""
