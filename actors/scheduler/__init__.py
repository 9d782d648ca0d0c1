"""The scheduler process: its actors, the job table, and the store behind them."""
