"""Helpers the test fixtures share: finding or starting the real servers tests run against."""
