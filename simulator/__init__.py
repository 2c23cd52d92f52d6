"""The built-in world: a seeded subscription business that reacts to the platform's contacts.

It stands in for the outside world, so it imports nothing of the platform (checked by
import-linter); the platform runs it only where a raw source or a demo needs its days
(``resources.sources``, ``platform_assets.campaign_demo``).
"""
