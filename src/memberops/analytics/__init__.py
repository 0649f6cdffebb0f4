"""Member KPIs, overviews, funnels, cohorts and the programme diagnosis."""
