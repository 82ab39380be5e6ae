"""Developer tools that run from a checkout of the repository; never installed."""
