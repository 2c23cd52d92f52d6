"""Decisions: retention campaigns with a randomized holdout, their measured impact, and uplift targeting."""
