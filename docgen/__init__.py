"""What the documentation site is built from besides `docs/`: the generated reference pages."""
