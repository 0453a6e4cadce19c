"""Seed procedures, read as source text by `optforge.search.moh.procedures` and run only in the procedure sandbox."""
