"""`nsconform --distros=LIST`: Debian releases as they ship, each booted on its own kernel (docs/distros.md)."""
