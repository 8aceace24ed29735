"""Small pieces every entry point shares: user-facing errors and atomic writes."""
