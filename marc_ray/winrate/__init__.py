"""Human-preference win rates from a certified judge plus a few labels (PPI++).

``ppi`` holds the estimators (pure array maths), ``items`` reads a run's items, ``estimate``
turns them into per-pair win rates and a Bradley–Terry leaderboard, ``render`` writes them,
``simulate`` draws pairs with a known true win rate (the tests' and the study's data), ``cli``
is ``marc-ray winrate``.
"""
