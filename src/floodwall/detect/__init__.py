"""Detection: site-level onset, client and fleet behaviour, breach signatures, the flash-crowd guard."""
