"""Loyalty: programmes, enrolment, the points ledger and its reports."""
