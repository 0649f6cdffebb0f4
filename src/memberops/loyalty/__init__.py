"""Loyalty: programmes, tiers, points ledger, coupons, rewards, benefits, referrals."""
