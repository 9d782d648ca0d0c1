"""Where the scheduler keeps its state: the store interface, its backends, and the
group-commit actor that writes through any of them."""
