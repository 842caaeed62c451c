"""The exporter role: features (the one source of truth), scraping, LiteRT inference, /metrics."""
