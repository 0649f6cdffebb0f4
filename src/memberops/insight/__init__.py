"""Member insight: traits, RFM, lifecycle, CLV, tags, KOC, the 360° profile."""
