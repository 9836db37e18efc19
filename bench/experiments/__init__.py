"""One-off measurements: each declares its rows, its stages and the table it renders from its JSON."""
